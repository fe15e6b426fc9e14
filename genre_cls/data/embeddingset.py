"""Transfer embeddings of a whole data set: every chunk of every track through a frozen pretrained
musicnn once, in worker processes or on Ray, cached on disk (the input of ``model=musicnn_head``).

:func:`build_embeddings` decodes each track at 16 kHz (:func:`~genre_cls.data.audio.load_audio`,
then :func:`~genre_cls.data.audio.clip_audio` to the context's clip), cuts it into chunks of one
musicnn patch (:data:`~genre_cls.models.musicnn.PATCH_SAMPLES`, 2.976 s) every ``hop`` samples
(:func:`chunk_starts`; at most ``most`` of them, evenly spread, when asked), and runs the pretrained network on them in eval mode
(:func:`~genre_cls.models.musicnn.pooled_midend`: the mid end pooled by mean and max, 1,506
values a chunk). Shards of up to 8 tracks go to the local worker pool or Ray
(:mod:`genre_cls.data.shards`, one torch thread each) with a progress bar.

The result is cached in ``<cache_dir>/embeddings/<key>.npz``, keyed by the backbone's name and the
sha256 of its weight file, the chunk, hop and most chunks a track, the clip, :data:`EMBEDDING_VERSION` and every file's
path, size and mtime; it is written atomically and rebuilt when stale or damaged. While it is
built, finished shards wait in ``<cache_dir>/shards/embeddings-<key>/``, so a killed build resumes.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from genre_cls.data.audio import AudioDecodeError, clip_audio, load_audio
from genre_cls.data.cache import fingerprint, load_npz, save_npz_cache
from genre_cls.data.context import BuildContext
from genre_cls.data.shards import clear_store, run_shards
from genre_cls.errors import UserError
from genre_cls.models.musicnn import EMBEDDING_SIZE, PATCH_SAMPLES, SAMPLE_RATE, Musicnn, pooled_midend

log = logging.getLogger(__name__)

__all__ = ["EMBEDDING_VERSION", "BACKBONES", "EmbeddingSet", "backbone", "build_embeddings", "chunk_starts", "embed_waveform"]

#: Bump when the chunking, the layer or the pooling changes: every cached set is then rebuilt.
EMBEDDING_VERSION = 1
#: The pretrained networks whose embeddings a model can read (:mod:`genre_cls.pretrained`).
BACKBONES = ("msd", "mtt")
#: Chunks per forward pass of the backbone (bounds the memory of a long track).
BATCH = 16


@dataclass
class EmbeddingSet:
    """The embeddings of the tracks that decoded, end to end, and why the others were skipped.

    Track ``i`` (of :attr:`paths`) has ``counts[i]`` chunks, rows ``offsets[i] : offsets[i] + counts[i]``
    of :attr:`embeddings`, in time order.
    """

    embeddings: np.ndarray  # (chunks, EMBEDDING_SIZE) float32
    counts: np.ndarray  # (N_ok,) int64
    paths: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum(self.counts) - self.counts

    def __len__(self) -> int:
        return len(self.paths)


def chunk_starts(n_samples: int, chunk: int, hop: int) -> np.ndarray:
    """Where the chunks of a track of ``n_samples`` start: every ``hop`` samples while a whole
    ``chunk`` fits, then one more (zero-padded) when what is left after the last whole chunk is at
    least half a chunk; a track no longer than a chunk is one (padded) chunk. With ``hop == chunk``
    this is the waveform kind's evaluation cut (:func:`genre_cls.data.kinds.waveform.chunk_count`)."""
    if chunk < 1 or hop < 1:
        raise ValueError(f"chunk and hop must be positive, got {chunk} and {hop}")
    if n_samples <= chunk:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - chunk + 1, hop, dtype=np.int64)
    if 2 * (n_samples - (starts[-1] + chunk)) >= chunk:
        starts = np.append(starts, starts[-1] + hop)
    return starts


def spread(starts: np.ndarray, most: int | None) -> np.ndarray:
    """At most ``most`` of ``starts``, evenly spaced over them, the first and the last included
    (``None``: all of them)."""
    if most is None or len(starts) <= most:
        return starts
    return starts[np.round(np.linspace(0, len(starts) - 1, int(most))).astype(np.int64)]


def chunks_of(y: np.ndarray, hop: int, most: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 16 kHz waveform as ``(chunks, PATCH_SAMPLES)`` float32 (zero-padded at the end) and the
    chunks' starts in samples (:func:`chunk_starts`; at most ``most`` of them, :func:`spread`)."""
    y = np.asarray(y, dtype=np.float32)
    starts = spread(chunk_starts(len(y), PATCH_SAMPLES, hop), most)
    out = np.zeros((len(starts), PATCH_SAMPLES), dtype=np.float32)
    for row, start in zip(out, starts):
        piece = y[start : start + PATCH_SAMPLES]
        row[: len(piece)] = piece
    return out, starts


@cache
def backbone(name: str) -> Musicnn:
    """The pretrained musicnn ``name`` (frozen, eval mode, CPU), loaded once a process; its weight
    file is checked against its sha256. An unknown name, or missing or damaged weights, is one
    :class:`~genre_cls.errors.UserError`."""
    from genre_cls.pretrained import load

    if name not in BACKBONES:
        raise UserError(f"unknown embedding backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    try:
        model = load(name)
    except (ValueError, RuntimeError) as exc:  # missing or damaged weights
        raise UserError(str(exc)) from None
    return model.requires_grad_(False)


def weights_sha256(name: str) -> str:
    """The sha256 of the installed weight file of backbone ``name`` (what a model trained on its
    embeddings must be used with)."""
    from genre_cls.pretrained import pretrained

    return pretrained(name).weights_sha256


def embed_waveform(model: Musicnn, y: np.ndarray, hop: int, most: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 16 kHz waveform -> ((chunks, :data:`EMBEDDING_SIZE`) float32 embeddings, chunk starts)
    (at most ``most`` chunks, :func:`chunks_of`)."""
    x, starts = chunks_of(y, hop, most)
    with torch.inference_mode():
        emb = torch.cat([pooled_midend(model, torch.from_numpy(x[i : i + BATCH])) for i in range(0, len(x), BATCH)])
    return emb.numpy(), starts


def _embed_shard(
    paths: Sequence[str], name: str, hop: int, most: int | None = None, clip: str = "first", clip_seconds: float | None = None,
    threads: int | None = 1,
) -> list[tuple[str, np.ndarray | None, str]]:
    """(path, embeddings or None, reason) for each path. ``threads``: torch's threads in this
    process (a worker's one; ``None`` leaves them as they are, in the caller's process)."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = backbone(name)
    out: list[tuple[str, np.ndarray | None, str]] = []
    for path in paths:
        try:
            y = clip_audio(load_audio(path, sr=SAMPLE_RATE), SAMPLE_RATE, clip_seconds, clip)
            emb, _ = embed_waveform(model, y, hop, most)
        except AudioDecodeError as exc:
            out.append((path, None, exc.reason))
            continue
        except Exception as exc:  # never let one bad file kill a data set build
            out.append((path, None, f"{type(exc).__name__}: {exc}"))
            continue
        if not np.isfinite(emb).all():  # never cache (or train on) NaN
            out.append((path, None, "its embeddings are not finite (NaN or infinity)"))
        else:
            out.append((path, emb, ""))
    return out


def _cache_key(paths: Sequence[str], name: str, hop: int, most: int | None, clip: dict) -> str:
    params = {"kind": "embeddings", "version": EMBEDDING_VERSION, "backbone": name, "weights": weights_sha256(name),
              "chunk": PATCH_SAMPLES, "hop": hop, "most": most, "sample_rate": SAMPLE_RATE, **clip}
    return fingerprint(params, paths)


def _from_cache(hit: dict, spaths: list[str]) -> EmbeddingSet | None:
    try:
        cpaths, ok = [str(p) for p in hit["paths"]], np.asarray(hit["ok"], dtype=bool)
        reasons, counts, emb = [str(r) for r in hit["reasons"]], np.asarray(hit["counts"], dtype=np.int64), hit["embeddings"]
    except KeyError:
        return None
    if cpaths != spaths or ok.shape != (len(spaths),) or len(reasons) != len(spaths) or counts.shape != (int(ok.sum()),):
        return None
    if emb.dtype != np.float32 or emb.shape != (int(counts.sum()), EMBEDDING_SIZE) or np.any(counts < 1):
        return None
    if not np.isfinite(emb).all():
        return None
    return EmbeddingSet(emb, counts, [p for p, m in zip(spaths, ok) if m], {p: r for p, m, r in zip(spaths, ok, reasons) if not m})


def _warn_skip(path: str, why: str) -> None:
    what = "unusable audio" if why.startswith("its embeddings") else "cannot decode audio"
    warnings.warn(f"skipping {path}: {what} ({why})", stacklevel=3)


def build_embeddings(
    paths: Sequence[str | os.PathLike], name: str = "msd", hop: int = PATCH_SAMPLES, most: int | None = None,
    context: BuildContext = BuildContext(),
) -> EmbeddingSet:
    """The embeddings of every chunk of ``paths``, computed once and cached (module docstring).

    Args:
        paths: audio files; the result keeps their order and spelling (``str(path)``).
        name: the pretrained musicnn (:data:`BACKBONES`).
        hop: samples between the starts of consecutive chunks at 16 kHz (``PATCH_SAMPLES``: no overlap).
        most: at most this many chunks of a track, evenly spaced over it (:func:`spread`; ``None``: every chunk).
        context: the cache, the workers and engine, the progress bar and each track's clip
            (:class:`~genre_cls.data.context.BuildContext`); no ``cache_dir``: nothing is cached.

    A file that cannot be decoded, or whose embeddings are not finite, is skipped with one warning
    naming it and recorded in ``EmbeddingSet.skipped``.
    """
    spaths = [os.fspath(p) for p in paths]
    if len(set(spaths)) != len(spaths):
        raise ValueError("build_embeddings got the same path more than once")
    hop = int(hop)
    backbone(name)  # a bad name or damaged weights: one line now, not one per worker; workers inherit it
    clipping = context.clip_key()
    cache_file = key = None
    if context.cache_dir is not None:
        try:
            key = _cache_key(spaths, name, hop, most, clipping)
        except OSError:
            key = None  # a missing file: no cache key; it is reported as skipped below
        if key is not None:
            cache_file = Path(context.cache_dir) / "embeddings" / f"{key}.npz"
            hit = load_npz(cache_file, key)
            if hit is not None:
                es = _from_cache(hit, spaths)
                if es is not None:
                    for path, why in es.skipped.items():
                        _warn_skip(path, why)
                    return es
                log.info("embedding cache %s is inconsistent; rebuilding", cache_file)

    workers = context.worker_count()
    if context.engine == "local" and len(spaths) <= 1:
        workers = 0
    size = 8 if workers == 0 and context.engine == "local" else max(1, min(8, -(-len(spaths) // (max(workers, 1) * 4))))
    shards = [spaths[i : i + size] for i in range(0, len(spaths), size)]
    store = Path(context.cache_dir) / "shards" / f"embeddings-{key}" if cache_file is not None else None
    done = run_shards(
        _embed_shard, shards, {"name": name, "hop": hop, "most": most, **clipping}, engine=context.engine, workers=workers,
        address=context.ray_address, store=store, key=key or "", progress=context.progress, desc="embeddings", unit="track",
        inline_kwargs={"threads": None},
    )
    results = {path: (emb, why) for shard in done for path, emb, why in shard}
    ok = [p for p in spaths if results[p][0] is not None]
    skipped = {p: results[p][1] for p in spaths if results[p][0] is None}
    for path, why in skipped.items():
        _warn_skip(path, why)
    counts = np.array([len(results[p][0]) for p in ok], dtype=np.int64)
    emb = np.concatenate([results[p][0] for p in ok]).astype(np.float32, copy=False) if ok else np.zeros((0, EMBEDDING_SIZE), np.float32)
    es = EmbeddingSet(emb, counts, ok, skipped)
    if cache_file is not None:
        try:
            save_npz_cache(
                cache_file, key, embeddings=emb, counts=counts, paths=np.array(spaths, dtype=str),
                ok=np.array([p not in skipped for p in spaths]), reasons=np.array([skipped.get(p, "") for p in spaths], dtype=str),
            )
        except OSError as exc:
            warnings.warn(f"could not write the embedding cache {cache_file}: {exc}", stacklevel=2)
        else:
            clear_store(store)
    return es

