"""``python -m medkd_bench``: the same as the ``medkd-bench`` command."""

from medkd_bench.entry import main

main()
