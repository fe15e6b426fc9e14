"""The features of a whole data set: extracted once, in worker processes, and cached on disk.

:func:`extract_dataset` decodes every track, cuts it into segments and runs the batched
feature path of :mod:`genre_cls.data.features` on them, in shards of up to 16 tracks on the
local worker pool or on Ray (:mod:`genre_cls.data.shards`), with a progress bar. The result is
cached in ``<cache_dir>/features/<key>.npz``, keyed by the feature parameters,
:data:`~genre_cls.data.features.FEATURE_VERSION` and every file's path, size and mtime; the
cache is written atomically and rebuilt when stale or damaged. While it is built, finished
shards wait in ``<cache_dir>/shards/features-<key>/``, so a crashed build resumes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from genre_cls.data.audio import N_SEGMENTS, SEGMENT_SAMPLES, AudioDecodeError, clip_audio, load_audio, segments as cut_segments
from genre_cls.data.cache import fingerprint, load_npz, save_npz_cache
from genre_cls.data.context import BuildContext
from genre_cls.data.shards import clear_store, run_shards
from genre_cls.data.features import FEATURE_VERSION, FeatureParams, extract_segments, warm

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Features of the files that decoded, in input order, and why the others were skipped."""

    features: np.ndarray  # (N_ok, 10, frames, n_features) float32
    paths: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> list[str]:
        return self.paths

    def __len__(self) -> int:
        return len(self.paths)


def _extract_chunk(
    paths: Sequence[str], params: FeatureParams, threads: int = 1, clip: str = "first", clip_seconds: float | None = None
) -> list[tuple[str, np.ndarray | None, str]]:
    """(path, features or None, reason) for each path: decode all (each cut to its ``clip``
    ``clip_seconds``, see :func:`~genre_cls.data.audio.clip_audio`), then one batched extraction."""
    decoded: list[tuple[str, np.ndarray | None, str]] = []
    for path in paths:
        try:
            y = clip_audio(load_audio(path, sr=params.sr), params.sr, clip_seconds, clip)
            decoded.append((path, cut_segments(y, N_SEGMENTS, SEGMENT_SAMPLES), ""))
        except AudioDecodeError as exc:
            decoded.append((path, None, exc.reason))
        except Exception as exc:  # never let one bad file kill a data set build
            decoded.append((path, None, f"{type(exc).__name__}: {exc}"))
    good = [segs for _, segs, _ in decoded if segs is not None]
    if not good:
        return decoded
    feats = extract_segments(np.concatenate(good), params, threads=threads)
    feats = feats.reshape(len(good), N_SEGMENTS, *feats.shape[1:])
    out, i = [], 0
    for path, segs, why in decoded:
        if segs is None:
            out.append((path, None, why))
        elif not np.isfinite(feats[i]).all():  # never cache (or train on) NaN
            out.append((path, None, "its features are not finite (NaN or infinity)"))
            i += 1
        else:
            out.append((path, feats[i], ""))
            i += 1
    return out


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _cache_key(paths: Sequence[str], params: FeatureParams, clip: dict) -> str:
    # ``clip`` is empty for whole tracks, so the keys of caches made before clips existed hold.
    return fingerprint({"params": params.as_dict(), "feature_version": FEATURE_VERSION, "kind": "features", **clip}, paths)


def extract_dataset(
    paths: Sequence[str | os.PathLike],
    params: FeatureParams = FeatureParams(),
    context: BuildContext = BuildContext(),
) -> FeatureSet:
    """Features of many tracks, decoded in parallel and cached on disk.

    Args:
        paths: audio files; the result keeps their order and their spelling (``str(path)``).
        params: feature framing.
        context: where and how (:class:`~genre_cls.data.context.BuildContext`): the result is
            stored in ``<cache_dir>/features/<key>.npz``, where the key covers ``params``,
            :data:`FEATURE_VERSION`, the clip and every file's path, size and mtime (no
            ``cache_dir``: no caching); ``workers`` processes on the ``engine`` (0: this process),
            the same cache either way; each track's ``clip`` of ``clip_seconds`` is what is cut into
            segments (``None``: its start, as GTZAN's 30 s clips always are).

    A file that cannot be decoded, or whose features are not finite, is skipped with one
    warning naming it and recorded in ``FeatureSet.skipped``; it is never zero-filled, and no
    NaN or infinity reaches the cache.
    """
    clipping = context.clip_key()
    cache_dir, engine = context.cache_dir, context.engine
    spaths = [os.fspath(p) for p in paths]
    if len(set(spaths)) != len(spaths):
        raise ValueError("extract_dataset got the same path more than once")
    n_frames = params.n_frames(SEGMENT_SAMPLES)
    empty = np.zeros((0, N_SEGMENTS, n_frames, params.n_features), dtype=np.float32)

    cache_file = key = None
    if cache_dir is not None:
        try:
            key = _cache_key(spaths, params, clipping)
        except OSError:
            key = None  # a missing file: no cache key; it is reported as skipped below
        if key is not None:
            cache_file = Path(cache_dir) / "features" / f"{key}.npz"
            hit = load_npz(cache_file, key)
            if hit is not None:
                fs = _from_cache(hit, spaths, n_frames, params)
                if fs is not None:
                    for path, why in fs.skipped.items():
                        _warn_skip(path, why)
                    return fs
                log.info("feature cache %s is inconsistent; rebuilding", cache_file)

    workers = context.worker_count()
    if engine == "local" and len(spaths) <= 1:
        workers = 0
    warm(params)  # build the filter banks once; forked workers inherit them
    if workers == 0 and engine == "local":
        chunks = list(_chunks(spaths, 16))
    else:
        chunks = list(_chunks(spaths, max(1, min(16, -(-len(spaths) // (max(workers, 1) * 4))))))
    store = Path(cache_dir) / "shards" / f"features-{key}" if cache_file is not None else None
    done = run_shards(
        _extract_chunk, chunks, {"params": params, **clipping}, engine=engine, workers=workers, address=context.ray_address,
        store=store, key=key or "", progress=context.progress, desc="features", unit="track",
        inline_kwargs={"threads": min(os.cpu_count() or 1, 8)},
    )
    results: dict[str, tuple[np.ndarray | None, str]] = {
        path: (feats, why) for chunk in done for path, feats, why in chunk
    }

    ok = [p for p in spaths if results[p][0] is not None]
    skipped = {p: results[p][1] for p in spaths if results[p][0] is None}
    for path, why in skipped.items():
        _warn_skip(path, why)
    feats = np.stack([results[p][0] for p in ok]).astype(np.float32, copy=False) if ok else empty
    fs = FeatureSet(features=feats, paths=ok, skipped=skipped)

    if cache_file is not None:
        try:
            save_npz_cache(
                cache_file,
                key,
                features=fs.features,
                paths=np.array(spaths, dtype=str),
                ok=np.array([p in results and results[p][0] is not None for p in spaths]),
                reasons=np.array([skipped.get(p, "") for p in spaths], dtype=str),
            )
        except OSError as exc:
            warnings.warn(f"could not write the feature cache {cache_file}: {exc}", stacklevel=2)
        else:
            clear_store(store)
    return fs


def _from_cache(hit: dict, spaths: list[str], n_frames: int, params: FeatureParams) -> FeatureSet | None:
    try:
        cpaths = [str(s) for s in hit["paths"]]
        ok_mask = np.asarray(hit["ok"], dtype=bool)
        reasons = [str(s) for s in hit["reasons"]]
        feats = hit["features"]
    except KeyError:
        return None
    expected = (int(ok_mask.sum()), N_SEGMENTS, n_frames, params.n_features)
    if cpaths != spaths or len(reasons) != len(spaths) or ok_mask.shape != (len(spaths),):
        return None
    if feats.shape != expected or feats.dtype != np.float32 or not np.isfinite(feats).all():
        return None  # a NaN written by an older version is rebuilt, not trained on
    ok = [p for p, m in zip(spaths, ok_mask) if m]
    skipped = {p: r for p, m, r in zip(spaths, ok_mask, reasons) if not m}
    return FeatureSet(features=feats, paths=ok, skipped=skipped)


def _warn_skip(path: str, why: str) -> None:
    what = "unusable audio" if why.startswith("its features") else "cannot decode audio"
    warnings.warn(f"skipping {path}: {what} ({why})", stacklevel=3)

