"""numpy's and scipy's BLAS run on one thread in every medkd-bench process (medkd_bench/runtime/blas.py).

OpenBLAS's default, one thread per core, made the pages' small matrix products wait for cores busy
with training: 80 ms instead of 0.66 ms per bootstrap product beside a two-worker run. Each check
runs in a fresh process whose BLAS starts at two threads (what OpenBLAS picks on a 2-core machine),
so it fails where nothing sets one thread.
"""

import json
import os
import subprocess
import sys

import pytest

READ = ("from threadpoolctl import threadpool_info\n"
        "print(json.dumps(sorted(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas')))\n")
TWO = ("import json, numpy, scipy.linalg\n"
       "from threadpoolctl import threadpool_limits\n"
       "threadpool_limits(2, user_api='blas')\n")


def _blas_threads_after(code: str, **env: str) -> list[int]:
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    out = subprocess.run([sys.executable, "-c", TWO + code + READ], capture_output=True, text=True, env=environ,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("where, code", [
    ("a command", "from medkd_bench.cli.main import main\nmain(['plugins'])\n"),
    ("a pool or Ray worker", "from pathlib import Path\n"
                             "from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup\n"
                             "from medkd_bench.run.run_options import RunOptions\n"
                             "worker_setup(WorkerRecipe((), RunOptions(work_dir=Path('.').resolve()), device='cpu'))\n"),
])
def test_numpy_and_scipy_blas_run_on_one_thread(where, code, tmp_path):
    threads = _blas_threads_after(f"import os\nos.chdir({str(tmp_path)!r})\n" + code)
    assert threads and set(threads) == {1}, where  # numpy's and scipy's own OpenBLAS (two libraries in wheels)


def test_a_blas_thread_count_the_user_chose_is_kept(tmp_path):
    code = "from medkd_bench.cli.main import main\nmain(['plugins'])\n"
    assert set(_blas_threads_after(code, OPENBLAS_NUM_THREADS="2")) == {2}
