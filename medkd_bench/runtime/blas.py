"""numpy's and scipy's BLAS on one thread: their matrix products here are small, and the cores are busy.

OpenBLAS starts one thread per core for every product. medkd-bench's numpy work is statistics on
small matrices (bootstrap CIs as image counts times a ``(seeds, n)`` matrix, clinical scores,
map agreement), and it runs beside training: the pool's other workers, or the other process of
a test suite. A product's threads then wait for cores that are busy, and spin: a
``(3, 2400) x (2400, 250)`` product took 80 ms instead of 0.66 ms on a 2-core machine whose cores
were training, and rendering the committed pages took 80 s instead of 55 s, with twice the CPU
time (``benchmarks/RESULTS.md``, session 31). On an idle machine two threads render those pages 8%
faster (31 s against 33 s) for 60% more CPU time: one thread is the setting that holds up wherever
the run shares its cores. torch's own BLAS is left alone (its threads are
``torch.set_num_threads``'s), and so is a count the user chose with ``OPENBLAS_NUM_THREADS``.
"""

from __future__ import annotations

import os
from pathlib import Path


def one_blas_thread() -> int:
    """Set numpy's and scipy's BLAS libraries to one thread for the rest of the process; how many were set."""
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return 0
    import numpy  # noqa: F401  (loads numpy's BLAS, so that it is there to be set)
    import scipy.linalg  # noqa: F401  (and scipy's)
    from threadpoolctl import ThreadpoolController

    libraries = [lib for lib in ThreadpoolController().select(user_api="blas").lib_controllers
                 if "torch" not in Path(lib.filepath).parts]
    for lib in libraries:
        lib.set_num_threads(1)
    return len(libraries)
