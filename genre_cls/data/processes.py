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
* workers die with their parent: on Linux the kernel sends them SIGKILL when the parent dies
  (``prctl(PR_SET_PDEATHSIG)``), even by ``kill -9``, so no worker (about 500 MB each during
  feature extraction) is left orphaned; they ignore SIGINT (Ctrl-C reaches the whole process
  group: the parent decides), and a pool left by an error or a signal drops its queued work.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_worker_blas_limit = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def mp_context():
    """The multiprocessing context every pool of the project uses: fork where available."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when ``parent`` dies (Linux), and exit now if it already has."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl (another libc): the parent-pid check below still runs once
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def one_blas_thread_worker(parent: int | None = None) -> None:
    """Process-pool initializer: BLAS / FFT inside the worker stay single-threaded for the
    life of the process (the limit object is kept alive), and the worker dies with ``parent``."""
    global _worker_blas_limit
    from threadpoolctl import threadpool_limits

    if parent is not None:
        die_with_parent(parent)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _worker_blas_limit = threadpool_limits(1)


class _Pool(ProcessPoolExecutor):
    """A pool that, when its ``with`` block ends by an error or a signal, cancels the work not
    started yet and stops its workers instead of finishing every queued task first."""

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return super().__exit__(exc_type, exc, tb)
        processes = list((getattr(self, "_processes", None) or {}).values())
        self.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()  # the task in progress is of no use any more
        for process in processes:
            process.join(timeout=10)  # gone before the caller cleans up what they were writing
        return False


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (another user's counts as running)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def max_workers() -> int:
    """The most worker processes a user may ask for: 4 per core (each one holds its own copy of
    the decoding libraries; far more would only exhaust the memory)."""
    return 4 * (os.cpu_count() or 1)


def available_memory() -> int | None:
    """The bytes of memory this process can still get: the machine's ``MemAvailable``, or less where
    its control group (a container, a SLURM job) sets a lower limit; ``None`` where neither says."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    room = _cgroup_room()
    return room if free is None else free if room is None else min(free, room)


#: Where a control group's memory limit and use are: cgroup v2, then v1.
_CGROUP_MEMORY = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_room() -> int | None:
    """The bytes left under this process's control group memory limit (``None``: no limit found)."""
    for limit_file, usage_file in _CGROUP_MEMORY:
        try:
            limit, usage = Path(limit_file).read_text().strip(), int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 1 << 60:  # "max", or v1's "unlimited" (a huge number)
            return None
        return max(0, int(limit) - usage)
    return None


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by :func:`mp_context`, one BLAS thread each,
    that die with this process."""
    return _Pool(
        max_workers=max(1, int(workers)), mp_context=mp_context(),
        initializer=one_blas_thread_worker, initargs=(os.getpid(),),
    )


def progress_bar(total: int, enabled: bool, desc: str, unit: str):
    """A tqdm bar over ``total`` items of work (silent when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)
