"""Decoded tracks for the waveform input kind: decoded once in workers, cached as int16, memory-mapped.

:func:`build_waveforms` decodes every track (:func:`genre_cls.data.audio.load_audio`, then
:func:`~genre_cls.data.audio.clip_audio` to its first or middle ``seconds``), converts it
to int16 (samples clipped to [-1, 1], then scaled by 32767 and rounded: a quantisation step
of 1/32767, about -90 dB; a float file that overshoots 1 is clipped) and writes all tracks
end to end into one array, 2 bytes a sample: 1.3 GB for GTZAN's 1,000 clips of 30 s at
22,050 Hz. The result, :class:`WaveformSet`, memory-maps that array read-only, so data
loader workers share the page cache instead of each holding a copy.

The cache is a folder ``<cache_dir>/waveforms/<key>/`` holding ``audio.npy`` (the int16
samples) and ``index.npz`` (paths, offsets, lengths, skip reasons). The key covers
everything that changes it: every file's path, size and mtime
(:func:`genre_cls.data.cache.fingerprint`), the sample rate, ``seconds``, ``clip`` and
:data:`WAVEFORM_VERSION`. The folder is built under a temporary name in the same parent and
renamed into place, so a killed build never leaves a folder that loads; a folder that does
not match its index (truncated audio, an unreadable index) is rebuilt, never loaded. A
temporary folder left by a build that was killed is removed by the next build of the same
key on the same host once its process is gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genre_cls.data.audio import SR, AudioDecodeError, clip_audio, load_audio
from genre_cls.data.cache import fingerprint, load_npz
from genre_cls.data.context import BuildContext
from genre_cls.data.shards import clear_store, iter_shards
from genre_cls.data.processes import process_alive

log = logging.getLogger(__name__)

__all__ = ["WAVEFORM_VERSION", "PCM_SCALE", "WaveformSet", "build_waveforms", "to_pcm16"]

#: Bump when the decoding or the cache layout changes: every cached set is then rebuilt.
WAVEFORM_VERSION = 1
#: int16 sample = round(clip(float sample, -1, 1) * PCM_SCALE); float = int16 / PCM_SCALE.
PCM_SCALE = 32767.0
AUDIO_FILE = "audio.npy"
INDEX_FILE = "index.npz"


@dataclass
class WaveformSet:
    """The tracks that decoded, end to end in one int16 array, and why the others were skipped.

    ``audio`` is memory-mapped read-only from the cache (an in-memory array when built
    without one); track ``i`` is ``audio[offsets[i] : offsets[i] + lengths[i]]``.
    """

    audio: np.ndarray  # (total,) int16
    offsets: np.ndarray  # (N_ok,) int64, in samples
    lengths: np.ndarray  # (N_ok,) int64, in samples
    paths: list[str]  # the tracks that decoded, in input order
    sample_rate: int
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason

    def __len__(self) -> int:
        return len(self.paths)

    def track(self, i: int) -> np.ndarray:
        """Track ``i`` as a float32 waveform in [-1, 1]."""
        start = int(self.offsets[i])
        return self.audio[start : start + int(self.lengths[i])].astype(np.float32) / np.float32(PCM_SCALE)


def to_pcm16(y: np.ndarray) -> np.ndarray:
    """A float waveform as int16: clipped to [-1, 1], scaled by :data:`PCM_SCALE`, rounded."""
    return np.rint(np.clip(y, -1.0, 1.0) * PCM_SCALE).astype(np.int16)


def _decode_chunk(paths: Sequence[str], sample_rate: int, seconds: float | None, clip: str) -> list[tuple[str, np.ndarray | None, str]]:
    """(path, int16 samples or None, reason) for each path."""
    out: list[tuple[str, np.ndarray | None, str]] = []
    for path in paths:
        try:
            y = clip_audio(load_audio(path, sr=sample_rate), sample_rate, seconds, clip)
            out.append((path, to_pcm16(y), ""))
        except AudioDecodeError as exc:
            out.append((path, None, exc.reason))
        except Exception as exc:  # never let one bad file kill a data set build
            out.append((path, None, f"{type(exc).__name__}: {exc}"))
    return out


def _decode_all(
    paths: Sequence[str], sample_rate: int, seconds: float | None, clip: str, workers: int, progress: bool,
    engine: str = "local", ray_address: str | None = None, store: Path | None = None, key: str = "",
) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """Decode every path on ``engine`` (:mod:`genre_cls.data.shards`: worker processes unless
    ``workers`` is 0, or Ray), with a progress bar; finished shards are kept in ``store``.

    Yields ``(path, int16 samples or None, reason)`` in input order, shard by shard as they are
    ready (a bounded number ahead), so the caller can write tracks out without holding the whole
    set in memory. The one place that maps the decoding over the tracks.
    """
    if engine == "local" and (workers == 0 or len(paths) <= 1):
        workers, size = 0, 16
    else:
        size = max(1, min(16, -(-len(paths) // (max(workers, 1) * 4))))
    chunks = [list(paths[i : i + size]) for i in range(0, len(paths), size)]
    for chunk in iter_shards(
        _decode_chunk, chunks, {"sample_rate": sample_rate, "seconds": seconds, "clip": clip}, engine=engine,
        workers=workers, address=ray_address, store=store, key=key, progress=progress, desc="waveforms", unit="track",
    ):
        yield from chunk


def _cache_key(paths: Sequence[str], sample_rate: int, seconds: float | None, clip: str) -> str:
    params = {"kind": "waveforms", "version": WAVEFORM_VERSION, "sample_rate": sample_rate, "seconds": seconds, "clip": clip}
    return fingerprint(params, paths)


def _write_set(folder: Path, key: str, paths: Sequence[str], sample_rate: int, decoded: Iterator) -> None:
    """Stream the decoded tracks into ``folder/audio.npy`` and write ``folder/index.npz``."""
    header = {"descr": np.dtype(np.int16).str, "fortran_order": False, "shape": (0,)}
    offsets, lengths, reasons = [], [], {}
    total = 0
    with open(folder / AUDIO_FILE, "wb") as fh:
        # The total length is known only at the end: write a placeholder header, the samples,
        # then the real header over the placeholder. numpy pads a 1-D header to a fixed size
        # (room for a 21-digit length), which the check below makes sure of.
        np.lib.format.write_array_header_1_0(fh, header)
        data_start = fh.tell()
        for path, pcm, why in decoded:
            if pcm is None:
                reasons[path] = why
                continue
            offsets.append(total)
            lengths.append(pcm.shape[0])
            total += pcm.shape[0]
            fh.write(pcm.astype("<i2", copy=False).tobytes())
        fh.seek(0)
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": (total,)})
        if fh.tell() != data_start:
            raise RuntimeError("the .npy header changed size; the waveform cache cannot be written in one pass")
        fh.flush()
        os.fsync(fh.fileno())
    with open(folder / INDEX_FILE, "wb") as fh:
        np.savez(
            fh,
            _key=np.array(key),
            paths=np.array(list(paths), dtype=str),
            ok=np.array([p not in reasons for p in paths], dtype=bool),
            reasons=np.array([reasons.get(p, "") for p in paths], dtype=str),
            offsets=np.array(offsets, dtype=np.int64),
            lengths=np.array(lengths, dtype=np.int64),
            sample_rate=np.array(sample_rate, dtype=np.int64),
        )
        fh.flush()
        os.fsync(fh.fileno())


def _read_set(folder: Path, key: str, paths: Sequence[str], sample_rate: int, mmap: bool) -> WaveformSet | None:
    """The set in ``folder`` if it is complete and consistent with ``key`` and ``paths``, else ``None``."""
    try:
        index = load_npz(folder / INDEX_FILE, key)
        if index is None:
            return None
        cpaths = [str(p) for p in index["paths"]]
        ok, reasons = np.asarray(index["ok"], dtype=bool), [str(r) for r in index["reasons"]]
        offsets, lengths = np.asarray(index["offsets"], dtype=np.int64), np.asarray(index["lengths"], dtype=np.int64)
        if cpaths != list(paths) or ok.shape != (len(paths),) or len(reasons) != len(paths):
            return None
        if int(index["sample_rate"]) != sample_rate or offsets.shape != lengths.shape or lengths.shape != (int(ok.sum()),):
            return None
        if np.any(lengths <= 0) or not np.array_equal(offsets, np.cumsum(lengths) - lengths):
            return None
        audio = np.load(folder / AUDIO_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception:  # a truncated or garbled file (ValueError, OSError, zip errors, KeyError): rebuild
        return None
    if audio.dtype != np.int16 or audio.shape != (int(lengths.sum()),):
        return None
    return WaveformSet(
        audio=audio, offsets=offsets, lengths=lengths, paths=[p for p, m in zip(cpaths, ok) if m],
        sample_rate=sample_rate, skipped={p: r for p, m, r in zip(cpaths, ok, reasons) if not m},
    )


def _temp_folder(parent: Path, key: str) -> Path:
    """A new, empty temporary folder for a build of ``key`` in ``parent``, named after this
    host and process (see :func:`_remove_abandoned`). Made with ``mkdir``, so it gets the
    umask's mode like the cache's files, not ``mkdtemp``'s private 0700."""
    while True:
        folder = parent / f".{key}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _remove_abandoned(parent: Path, key: str) -> None:
    """Remove temporary build folders of ``key`` left on this host by processes that are gone."""
    host = socket.gethostname()
    for folder in parent.glob(f".{key}.*.tmp"):
        parts = folder.name[len(key) + 2 :].split(".")  # host (may hold dots), pid, random, "tmp"
        if len(parts) < 4 or ".".join(parts[:-3]) != host or not parts[-3].isdigit():
            continue  # another host's build, or not ours: leave it
        if not process_alive(int(parts[-3])):
            shutil.rmtree(folder, ignore_errors=True)


def _publish(built: Path, folder: Path) -> None:
    """Rename the finished ``built`` folder to ``folder``, replacing a damaged one there."""
    try:
        os.rename(built, folder)
        return
    except OSError:
        if not folder.exists():
            raise
    old = _temp_folder(folder.parent, folder.name)
    os.rename(folder, old / "old")  # readers that mapped the old files keep them until they close
    try:
        os.rename(built, folder)
    except OSError:
        if not folder.exists():
            raise
        shutil.rmtree(built, ignore_errors=True)  # a concurrent build has just put a complete set there
    shutil.rmtree(old, ignore_errors=True)


def _warn_skipped(skipped: dict[str, str]) -> None:
    for path, why in skipped.items():
        warnings.warn(f"skipping {path}: cannot decode audio ({why})", stacklevel=3)


def build_waveforms(
    paths: Sequence[str | os.PathLike],
    sample_rate: int = SR,
    context: BuildContext = BuildContext(),
) -> WaveformSet:
    """The decoded tracks of ``paths``, built once in worker processes and cached.

    Args:
        paths: audio files; the result keeps their order and spelling (``str(path)``).
        sample_rate: decode to this rate.
        context: where and how (:class:`~genre_cls.data.context.BuildContext`): each track's
            ``clip`` of ``clip_seconds`` is kept (``None``: whole tracks, see
            :func:`genre_cls.data.audio.clip_audio`); the set lives in
            ``<cache_dir>/waveforms/<key>/`` and ``audio`` is memory-mapped from there (no
            ``cache_dir``, or one that cannot be created: no caching, ``audio`` held in memory);
            ``workers`` processes decode on the ``engine`` (0: in this process), the same cache
            either way, and a crashed build resumes from the shards it kept in
            ``<cache_dir>/shards/waveforms-<key>/``.

    A file that cannot be decoded, or decodes to no samples, non-finite samples or samples
    too large to be audio, is skipped with one warning naming it and recorded in
    ``WaveformSet.skipped``.
    """
    spaths = [os.fspath(p) for p in paths]
    if len(set(spaths)) != len(spaths):
        raise ValueError("build_waveforms got the same path more than once")
    seconds = None if context.clip_seconds is None else float(context.clip_seconds)
    clip = context.clip if seconds is not None else "first"  # whole tracks keep the keys made before clips
    sample_rate = int(sample_rate)
    workers = context.worker_count()
    cache_dir, engine, progress, ray_address = context.cache_dir, context.engine, context.progress, context.ray_address

    folder = key = None
    if cache_dir is not None:
        try:
            key = _cache_key(spaths, sample_rate, seconds, clip)
        except OSError:
            key = None  # a missing file: no cache key; it is reported as skipped below
    if key is not None:
        folder = Path(cache_dir) / "waveforms" / key
        hit = _read_set(folder, key, spaths, sample_rate, mmap=True)
        if hit is not None:
            _warn_skipped(hit.skipped)
            return hit
        if folder.exists():
            log.info("waveform cache %s is damaged or incomplete; rebuilding", folder)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(folder.parent, key)
            built = _temp_folder(folder.parent, key)
        except OSError as exc:
            warnings.warn(f"could not create the waveform cache in {folder.parent}: {exc}; keeping the audio in memory", stacklevel=2)
            folder = None
    if folder is None:
        key = key or "uncached"
        built = Path(tempfile.mkdtemp(prefix="genre_cls_waveforms_"))

    store = Path(cache_dir) / "shards" / f"waveforms-{key}" if folder is not None else None
    try:
        decoded = _decode_all(spaths, sample_rate, seconds, clip, workers, progress, engine, ray_address, store, key)
        _write_set(built, key, spaths, sample_rate, decoded)
        if folder is None:
            result = _read_set(built, key, spaths, sample_rate, mmap=False)
        else:
            _publish(built, folder)
            clear_store(store)
            result = _read_set(folder, key, spaths, sample_rate, mmap=True)
    finally:
        shutil.rmtree(built, ignore_errors=True)  # gone already once published
    if result is None:
        raise OSError(f"the waveform set just written to {folder or built} cannot be read back")
    _warn_skipped(result.skipped)
    return result
