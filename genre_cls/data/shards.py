"""Where the per-shard work of a data-set build runs: this process, the local worker pool, or Ray.

Feature extraction (:func:`genre_cls.data.featureset.extract_dataset`), image rendering
(:func:`genre_cls.data.imageset.build_images`) and waveform decoding
(:func:`genre_cls.data.waveformset.build_waveforms`) cut their tracks into shards of a few tracks
and hand a per-shard function to :func:`run_shards` (all results at once) or
:func:`iter_shards` (streamed in shard order, a bounded number ahead), which run it

* with ``engine="local"`` (the default) in :func:`genre_cls.data.processes.process_pool` (forked
  processes, one BLAS thread each), or in this process when ``workers=0``;
* with ``engine="ray"`` as Ray tasks (one CPU each, one BLAS thread), on a local Ray started
  with ``num_cpus=workers`` or on the running cluster at ``address`` (``"auto"``, or
  ``"ray://head:10001"``). Ray retries a task whose worker died (``max_retries``).

Either way the results come back to this process in shard order, so the caller writes the
same cache file bit for bit whatever the engine. With ``store`` (a folder under the cache
directory), every finished shard is also saved there as it arrives (an atomic ``.npz``): a run
that crashed or was killed is resumed by running it again, and only the missing shards are
computed. The caller removes the folder once the whole result is cached (:func:`clear_store`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from genre_cls.data.cache import load_npz, save_npz_cache
from genre_cls.data.processes import process_pool, progress_bar
from genre_cls.errors import UserError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: Times Ray re-runs a task whose worker process died (killed, out of memory, node lost).
RAY_RETRIES = 3
RAY_MISSING = "data.engine=ray needs Ray, which is not installed: pip install genre_cls[ray] (or pip install 'ray>=2.40')"

RAY_ADDRESS_HINT = "start the cluster (ray start --head) or fix data.ray_address (null: a local Ray)"


class EngineError(UserError):
    """A worker died and the work cannot go on in this run (the finished shards are kept)."""


def check_engine(engine: str) -> None:
    """One-line :class:`UserError` for an engine name that is not in :data:`ENGINES`."""
    if engine not in ENGINES:
        raise UserError(f"unknown data.engine {engine!r}: choose one of {', '.join(ENGINES)}")


# -- finished shards on disk ---------------------------------------------------------------------
# A shard's result is a list of tuples whose fields are arrays, strings or None (features or
# pixels, paths, reasons). They are stored as plain arrays, without pickle, and come back equal.
def _shard_key(key: str, shard: Sequence) -> str:
    return hashlib.sha256(repr((key, [tuple(map(str, i)) if isinstance(i, tuple) else str(i) for i in shard])).encode()).hexdigest()[:20]


def _save_shard(path: Path, key: str, results: list) -> None:
    arrays: dict[str, np.ndarray] = {}
    kinds = []
    for i, item in enumerate(results):
        row = ""
        for j, value in enumerate(item):
            if value is None:
                row += "n"
            elif isinstance(value, np.ndarray):
                arrays[f"a{i}_{j}"] = value
                row += "a"
            else:
                arrays[f"s{i}_{j}"] = np.array(str(value))
                row += "s"
        kinds.append(row)
    save_npz_cache(path, key, _kinds=np.array(kinds, dtype=str), **arrays)


def _load_shard(path: Path, key: str) -> list | None:
    try:
        hit = load_npz(path, key)
        if hit is None:
            return None
        out = []
        for i, row in enumerate(str(k) for k in hit["_kinds"]):
            fields = []
            for j, kind in enumerate(row):
                fields.append(None if kind == "n" else hit[f"a{i}_{j}"] if kind == "a" else str(hit[f"s{i}_{j}"]))
            out.append(tuple(fields))
        return out
    except Exception:  # a damaged or foreign file: compute the shard again
        return None


def _stored(path: Path, key: str) -> bool:
    """Whether ``path`` holds the shard of ``key``, reading only its key (shards can be large)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "_key" in npz.files and str(npz["_key"]) == key
    except Exception:  # absent, damaged or foreign
        return False


def clear_store(store: str | os.PathLike | None) -> None:
    """Remove the finished shards once the whole result is cached (their data is in the cache now)."""
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)


# -- the engines --------------------------------------------------------------------------------
def _ray_task(fn: Callable[..., list], shard: Sequence, kwargs: Mapping[str, Any]) -> list:
    """A shard inside a Ray worker (or here): one BLAS thread, as in the local pool, so the numbers agree."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(shard, **kwargs)


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """One-line :class:`UserError` unless ``address`` (``host:port`` or ``ray://host:port``; ``auto``
    is left to Ray) takes a TCP connection within ``timeout`` seconds: Ray itself retries an
    unreachable address for minutes before it gives up."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"data.ray_address {address!r} is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({exc}): {RAY_ADDRESS_HINT}") from None


def start_ray(address: str | None = None, workers: int | None = None):
    """The ``ray`` module, connected: to the Ray already running in this process, to the cluster
    at ``address``, or to a new local Ray with ``num_cpus=workers`` (default: every CPU)."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            log.info("connecting to the Ray cluster at %s", address)
            check_ray_address(address)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {address!r} ({exc}): {RAY_ADDRESS_HINT}") from None
        else:
            ray.init(num_cpus=max(1, int(workers or os.cpu_count() or 1)), **options)
    return ray


class _Inline:
    """Shards computed in this process, one per :meth:`wait`."""

    window = 1

    def __init__(self, fn, shards, kwargs) -> None:
        self.fn, self.shards, self.kwargs = fn, shards, kwargs
        self.pending: deque[int] = deque()

    def submit(self, i: int) -> None:
        self.pending.append(i)

    def wait(self) -> list[tuple[int, Any]]:
        i = self.pending.popleft()
        return [(i, self.fn(self.shards[i], **self.kwargs))]

    def close(self, failed: bool) -> None:
        pass


class _Local:
    """Shards on :func:`genre_cls.data.processes.process_pool`."""

    def __init__(self, fn, shards, kwargs, workers: int, n_todo: int) -> None:
        self.fn, self.shards, self.kwargs = fn, shards, kwargs
        self.window = 4 * workers
        self.pool = process_pool(min(workers, n_todo))
        self.futures: dict[Future, int] = {}

    def submit(self, i: int) -> None:
        self.futures[self.pool.submit(self.fn, self.shards[i], **self.kwargs)] = i

    def wait(self) -> list[tuple[int, Any]]:
        done, _ = wait_futures(self.futures, return_when=FIRST_COMPLETED)
        out: list[tuple[int, Any]] = []
        for fut in done:
            i = self.futures.pop(fut)
            try:
                out.append((i, fut.result()))
            except BrokenProcessPool as exc:
                out.append((i, EngineError(f"a worker process died ({exc}; out of memory?)")))
            except Exception as exc:  # the function's own error, raised once the others are kept
                out.append((i, exc))
        return out

    def close(self, failed: bool) -> None:
        # A failed run drops the queued shards and stops the workers (see workers._Pool).
        self.pool.__exit__(EngineError if failed else None, None, None)


#: How many builds of this process ran shards on Ray (:func:`ray_builds`).
_RAY_BUILDS = 0


def ray_builds() -> int:
    """How many data-set builds of this process have run shards on Ray so far: a caller compares
    the count before and after a build to know whether Ray did any of its work (a build whose
    results were all cached runs nothing)."""
    return _RAY_BUILDS


class _Ray:
    """Shards as Ray tasks, one CPU each, retried when their worker dies."""

    def __init__(self, fn, shards, kwargs, workers: int, address: str | None) -> None:
        global _RAY_BUILDS
        self.ray = ray = start_ray(address, workers)
        _RAY_BUILDS += 1
        self.shards = shards
        self.fn = fn
        self.task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_ray_task)
        self.shared = ray.put(dict(kwargs))
        self.window = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.refs: dict[Any, int] = {}

    def submit(self, i: int) -> None:
        self.refs[self.task.remote(self.fn, self.shards[i], self.shared)] = i

    def wait(self) -> list[tuple[int, Any]]:
        ray = self.ray
        ready, rest = ray.wait(list(self.refs), num_returns=1)
        if rest:  # and whatever else is ready by now
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out: list[tuple[int, Any]] = []
        for ref in ready:
            i = self.refs.pop(ref)
            try:
                out.append((i, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # the function itself raised: its own error
                out.append((i, exc.as_instanceof_cause()))
            except ray.exceptions.RayError as exc:  # worker or node lost after every retry
                out.append((i, EngineError(f"a Ray worker died {RAY_RETRIES + 1} times on one shard ({type(exc).__name__})")))
        return out

    def close(self, failed: bool) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)


def iter_shards(
    fn: Callable[..., list],
    shards: Sequence[Sequence],
    kwargs: Mapping[str, Any] | None = None,
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    store: str | os.PathLike | None = None,
    key: str = "",
    progress: bool = True,
    desc: str = "shards",
    unit: str = "track",
    inline_kwargs: Mapping[str, Any] | None = None,
) -> Iterator[list]:
    """``fn(shard, **kwargs)`` for every shard, on ``engine``, yielded in shard order.

    Each shard's results are yielded as soon as it and every shard before it are done, and
    only a few shards per worker run or wait ahead of the one the caller is at, so a caller
    that writes each shard out (decoded waveforms larger than memory) never holds them all.

    Args:
        fn: a module-level function (Ray and the pool send it by name) that returns one tuple
            per item of its shard, whose fields are arrays, strings or ``None``.
        shards: the items, cut into shards (each a task).
        kwargs: the other arguments of ``fn``, the same for every shard.
        engine: ``"local"`` or ``"ray"`` (:data:`ENGINES`).
        workers: local: processes (default: ``min(cpus, 8)``; 0: this process, with
            ``inline_kwargs`` added to ``kwargs``); Ray: the CPUs of a local Ray it starts.
        address: Ray: the cluster to connect to; ``None`` starts a local Ray (or uses the one
            this process already runs).
        store: a folder for the finished shards (resume after a crash); ``None``: none kept.
        key: everything the results depend on besides a shard's items (the cache key).
        progress: a tqdm bar counting items (``desc``, ``unit``).

    Raises:
        EngineError: a worker died (the local pool; Ray after :data:`RAY_RETRIES` retries); the
            finished shards stay in ``store`` for the next run.
        UserError: ``engine="ray"`` without Ray installed, or an unknown engine.
        Exception: what ``fn`` raised, once the shards finished beside it are kept.
    """
    check_engine(engine)
    kwargs = dict(kwargs or {})
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(0, int(workers))
    # One shard has nothing to resume from: it is finished or not.
    store = Path(store) if store is not None and len(shards) > 1 else None
    keys = [_shard_key(key, s) for s in shards]
    kept = {i for i in range(len(shards)) if store is not None and _stored(store / f"{i:06d}.npz", keys[i])}
    todo = deque(i for i in range(len(shards)) if i not in kept)
    if kept:
        log.info("resuming: %d of %d shards were finished by an earlier run (%s)", len(kept), len(shards), store)
    bar = progress_bar(sum(map(len, shards)), progress, desc, unit)
    runner = None
    finished = len(kept)
    try:
        if todo:
            if engine == "ray":
                runner = _Ray(fn, shards, kwargs, workers, address)
            elif workers == 0:
                runner = _Inline(fn, shards, kwargs | dict(inline_kwargs or {}))
            else:
                runner = _Local(fn, shards, kwargs, workers, len(todo))
        waiting: dict[int, list] = {}
        for nxt in range(len(shards)):
            if nxt in kept:
                result = _load_shard(store / f"{nxt:06d}.npz", keys[nxt])
                if result is None or len(result) != len(shards[nxt]):  # gone or damaged since: compute it here
                    result = _ray_task(fn, shards[nxt], kwargs)
                bar.update(len(shards[nxt]))
                yield result
                continue
            while nxt not in waiting:
                while todo and todo[0] < nxt + runner.window:
                    runner.submit(todo.popleft())
                failure = None
                for i, result in runner.wait():
                    if isinstance(result, BaseException):
                        failure = failure or result
                        continue
                    waiting[i] = list(result)
                    finished += 1
                    if store is not None:
                        try:
                            _save_shard(store / f"{i:06d}.npz", keys[i], waiting[i])
                        except OSError as exc:  # a full disk costs the resume, not the run
                            log.warning("could not keep shard %d in %s: %s", i, store, exc)
                    bar.update(len(shards[i]))
                if failure is not None:
                    raise failure
            yield waiting.pop(nxt)
    except EngineError as exc:
        if runner is not None:
            runner.close(failed=True)
            runner = None
        where = (f"; the {finished} finished shards are kept in {store}: run the same command again to compute "
                 "only the missing ones") if store is not None and finished else ""
        raise EngineError(f"{exc}{where}") from exc.__cause__
    except BaseException:
        if runner is not None:
            runner.close(failed=True)
            runner = None
        raise
    finally:
        if runner is not None:
            runner.close(failed=False)
        bar.close()


def run_shards(fn: Callable[..., list], shards: Sequence[Sequence], kwargs: Mapping[str, Any] | None = None, **options) -> list[list]:
    """:func:`iter_shards` collected: every shard's results, in shard order (same arguments)."""
    return list(iter_shards(fn, shards, kwargs, **options))
