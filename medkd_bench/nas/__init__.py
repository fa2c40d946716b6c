"""Hardware-aware students: search the once-for-all MobileNetV3 supernet for a budget on this machine.

Split as OFA splits it: :mod:`.space` (the search space and subnet builder),
:mod:`.cost_table` (per-part latency and MACs lookup table, timed here),
:mod:`.evolution` (the evolutionary search) and :mod:`.spec_files` (the student
spec files the ``ofa-search`` plugin registers). The ``student search``
command that drives it lives with the other commands, in
:mod:`medkd_bench.cli.student`. This package is public API for plugins, like
:mod:`medkd_bench` and :mod:`medkd_bench.testing`.
"""

from medkd_bench.nas.spec_files import SearchedStudent, iter_searched_students

__all__ = ["SearchedStudent", "iter_searched_students"]
