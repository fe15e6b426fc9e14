"""Where the per-shard work of a data-set build runs: this process, the local worker pool, or Ray.

Feature extraction (:func:`genre_cls.data.featureset.extract_dataset`) and image rendering
(:func:`genre_cls.data.images.build_images`) cut their tracks into shards of a few tracks and
hand a per-shard function to :func:`run_shards`, which runs it

* with ``engine="local"`` (the default) in :func:`genre_cls.data.workers.process_pool` (forked
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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from genre_cls.data.cache import load_npz, save_npz_cache
from genre_cls.data.workers import process_pool, progress_bar
from genre_cls.errors import UserError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: Times Ray re-runs a task whose worker process died (killed, out of memory, node lost).
RAY_RETRIES = 3
RAY_MISSING = "data.engine=ray needs Ray, which is not installed: pip install genre_cls[ray] (or pip install 'ray>=2.40')"


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


def clear_store(store: str | os.PathLike | None) -> None:
    """Remove the finished shards once the whole result is cached (their data is in the cache now)."""
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)


# -- the engines --------------------------------------------------------------------------------
def _ray_task(fn: Callable[..., list], shard: Sequence, kwargs: Mapping[str, Any]) -> list:
    """A shard inside a Ray worker: one BLAS thread, as in the local pool, so the numbers agree."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(shard, **kwargs)


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
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=max(1, int(workers or os.cpu_count() or 1)), **options)
    return ray


def _run_local(fn, shards, todo, kwargs, workers, done: Callable[[int, list], None]) -> None:
    if workers == 0:
        for i in todo:
            done(i, fn(shards[i], **kwargs))
        return
    with process_pool(min(workers, len(todo))) as pool:
        futures = {pool.submit(fn, shards[i], **kwargs): i for i in todo}
        try:
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
        except BrokenProcessPool as exc:
            raise EngineError(f"a worker process died ({exc}; out of memory?)") from exc


def _run_ray(fn, shards, todo, kwargs, workers, address, done: Callable[[int, list], None]) -> None:
    ray = start_ray(address, workers)
    task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_ray_task)
    shared = ray.put(dict(kwargs))
    pending = {task.remote(fn, shards[i], shared): i for i in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the function itself raised: its own error
                    raise exc.as_instanceof_cause() from None
                except ray.exceptions.RayError as exc:  # worker or node lost after every retry
                    raise EngineError(f"a Ray worker died {RAY_RETRIES + 1} times on one shard ({type(exc).__name__})") from exc
                done(i, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def run_shards(
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
) -> list[list]:
    """``fn(shard, **kwargs)`` for every shard, on ``engine``; the results in shard order.

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
    """
    check_engine(engine)
    kwargs = dict(kwargs or {})
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(0, int(workers))
    # One shard has nothing to resume from: it is finished or not.
    store = Path(store) if store is not None and len(shards) > 1 else None
    results: list[list | None] = [None] * len(shards)
    keys = [_shard_key(key, s) for s in shards]
    bar = progress_bar(sum(map(len, shards)), progress, desc, unit)

    def done(i: int, result: list) -> None:
        results[i] = list(result)
        if store is not None:
            try:
                _save_shard(store / f"{i:06d}.npz", keys[i], results[i])
            except OSError as exc:  # a full disk costs the resume, not the run
                log.warning("could not keep shard %d in %s: %s", i, store, exc)
        bar.update(len(shards[i]))

    try:
        todo = []
        for i, shard in enumerate(shards):
            hit = _load_shard(store / f"{i:06d}.npz", keys[i]) if store is not None else None
            if hit is not None and len(hit) == len(shard):
                results[i] = hit
                bar.update(len(shard))
            else:
                todo.append(i)
        if store is not None and len(todo) < len(shards):
            log.info("resuming: %d of %d shards were finished by an earlier run (%s)", len(shards) - len(todo), len(shards), store)
        if todo:
            try:
                if engine == "ray":
                    _run_ray(fn, shards, todo, kwargs, workers, address, done)
                else:
                    _run_local(fn, shards, todo, kwargs | (dict(inline_kwargs or {}) if workers == 0 else {}), workers, done)
            except EngineError as exc:
                kept = sum(r is not None for r in results)
                where = f"; the {kept} finished shards are kept in {store}: run the same command again to compute only the missing ones" if store is not None and kept else ""
                raise EngineError(f"{exc}{where}") from exc.__cause__
    finally:
        bar.close()
    return results  # type: ignore[return-value]
