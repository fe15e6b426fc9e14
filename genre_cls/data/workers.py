"""Worker processes for data work (feature extraction, the synthetic set, DataLoader workers).

One place decides how they start and what they inherit:

* ``fork`` where the platform has it (as torch's DataLoader does): the parent's imports and
  filter banks are inherited instead of rebuilt, and a calling script without an
  ``if __name__ == "__main__":`` guard is not re-run (which ``spawn`` would do). An explicit
  context also works inside a joblib (loky) launcher job, whose default context cannot host
  DataLoader workers.
* one BLAS thread per worker: a process per core is faster than threads fighting over cores,
  and OpenBLAS sums in an order that depends on its thread count, so results do not depend on
  the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

_worker_blas_limit = None


def mp_context():
    """The multiprocessing context every pool of the project uses: fork where available."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def one_blas_thread_worker() -> None:
    """Process-pool initializer: BLAS / FFT inside the worker stay single-threaded for the
    life of the process (the limit object is kept alive)."""
    global _worker_blas_limit
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _worker_blas_limit = threadpool_limits(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by :func:`mp_context`, one BLAS thread each."""
    return ProcessPoolExecutor(max_workers=max(1, int(workers)), mp_context=mp_context(), initializer=one_blas_thread_worker)
