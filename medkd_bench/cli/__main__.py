"""``python -m medkd_bench.cli``: the same as the ``medkd-bench`` command."""

from medkd_bench.entry import main

main()
