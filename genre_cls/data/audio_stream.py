"""A file decoded block by block for prediction, with what the decoder saw: :func:`decode_blocks`,
:class:`AudioStats` and :func:`audio_flags`.

Memory stays bounded whatever a file's length: soundfile reads :data:`BLOCK_SECONDS` of the file
at a time, each block is mixed down (the mean over channels) and resampled by one soxr stream
(``soxr_hq``, librosa's default resampler) that carries its state from block to block, and the
last block is padded or trimmed to ``ceil(frames * sr / native rate)`` samples as
``librosa.resample`` fixes the length. Joined, the blocks equal
:func:`genre_cls.data.audio.load_audio` of the same file (the tests hold them equal, bit for bit
on PCM files). Files soundfile cannot open fall back to :func:`~genre_cls.data.audio.load_audio`
(audioread) and arrive as one block.

A file that stops decoding part way (a truncated FLAC, a download cut short) is not thrown away:
the audio before the damage is scored, and :class:`AudioStats` says where decoding stopped.
:func:`audio_flags` names what makes a prediction questionable: silence, a clip far shorter than
the model's unit, a decoded length that disagrees with the file's header.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from genre_cls.data.audio import (SR, AudioDecodeError, check_audio_file, header_problem, load_audio, sample_problem,
                                  to_mono)
from genre_cls.errors import one_line

#: Seconds of the file soundfile reads at a time.
BLOCK_SECONDS = 10.0
#: librosa's default resampler, which :func:`~genre_cls.data.audio.load_audio` uses.
RESAMPLER = "soxr_hq"
#: Below this peak (dBFS) nothing in the file is audible: ``silent``.
SILENT_PEAK_DB = -60.0
#: Below this RMS level (dBFS) the file is ``near_silent`` (real music lies around -30 to -10 dBFS;
#: the quietest of the 419 real GTZAN clips and excerpts is a classical clip at -28 dBFS).
NEAR_SILENT_RMS_DB = -50.0
#: A clip shorter than this fraction of the model's unit is ``too_short``: the unit is mostly padding.
TOO_SHORT_FRACTION = 0.5
#: The decoded length and the header's may differ by this much before ``length_mismatch``
#: (seconds, and a fraction of the header's length: the larger counts).
LENGTH_TOLERANCE_S = 0.5
LENGTH_TOLERANCE = 0.01

#: The flags :func:`audio_flags` can raise, in the order it reports them.
FLAGS = ("silent", "near_silent", "too_short", "length_mismatch")


@dataclass
class AudioStats:
    """What decoding a file saw, filled in by :func:`decode_blocks` as it goes.

    Attributes:
        sample_rate: the rate of the blocks.
        samples: samples decoded (at ``sample_rate``).
        peak: the largest sample magnitude.
        sum_squares: the sum of the squared samples (float64), for the RMS level.
        header_seconds: the length the file's header announces (``None``: unknown).
        stopped: why decoding stopped before the end of the file (``None``: it did not).
    """

    sample_rate: int = SR
    samples: int = 0
    peak: float = 0.0
    sum_squares: float = 0.0
    header_seconds: float | None = None
    stopped: str | None = None

    def add(self, y: np.ndarray) -> None:
        """Count the block ``y``."""
        if y.size:
            self.samples += int(y.size)
            self.peak = max(self.peak, float(np.max(np.abs(y))))
            self.sum_squares += float(np.dot(y.astype(np.float64), y.astype(np.float64)))

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    @property
    def peak_db(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else -math.inf

    @property
    def rms_db(self) -> float:
        ms = self.sum_squares / self.samples if self.samples else 0.0
        return 10 * math.log10(ms) if ms > 0 else -math.inf


def _db(value: float) -> str:
    return "-inf" if value == -math.inf else f"{value:.0f}"


def audio_flags(stats: AudioStats, unit_seconds: float, unit: str) -> dict[str, str]:
    """What makes a prediction of this audio questionable, by flag (:data:`FLAGS`), each with one
    sentence that says why: ``silent`` (no sample above :data:`SILENT_PEAK_DB`), ``near_silent``
    (RMS below :data:`NEAR_SILENT_RMS_DB`), ``too_short`` (shorter than
    :data:`TOO_SHORT_FRACTION` of the model's ``unit``, which lasts ``unit_seconds``),
    ``length_mismatch`` (decoding stopped early, or the decoded length and the header's differ by
    more than :data:`LENGTH_TOLERANCE_S` and :data:`LENGTH_TOLERANCE`). Empty when nothing is."""
    flags: dict[str, str] = {}
    if stats.peak_db < SILENT_PEAK_DB:
        flags["silent"] = (f"the audio is silent (peak {_db(stats.peak_db)} dBFS, below {SILENT_PEAK_DB:g}): "
                           "its genre means nothing")
    elif stats.rms_db < NEAR_SILENT_RMS_DB:
        flags["near_silent"] = (f"the audio is near silence (RMS level {_db(stats.rms_db)} dBFS, below "
                                f"{NEAR_SILENT_RMS_DB:g}; peak {_db(stats.peak_db)} dBFS): its genre means little")
    if stats.seconds < TOO_SHORT_FRACTION * unit_seconds:
        flags["too_short"] = (f"{stats.seconds:.2f} s of audio is far shorter than the model's {unit} "
                              f"({unit_seconds:.3g} s): the unit it was judged on is mostly padding")
    header = stats.header_seconds
    if stats.stopped is not None:
        announced = f" of the {header:.2f} s its header announces" if header is not None else ""
        flags["length_mismatch"] = (f"decoding stopped after {stats.seconds:.2f} s{announced} ({stats.stopped}): "
                                    "the file is damaged, only the audio before the damage was judged")
    elif header is not None and abs(stats.seconds - header) > max(LENGTH_TOLERANCE_S, LENGTH_TOLERANCE * header):
        flags["length_mismatch"] = (f"{stats.seconds:.2f} s of audio decoded but its header announces {header:.2f} s: "
                                    "the file is probably truncated or damaged")
    return flags


def waveform_stats(y: np.ndarray, sample_rate: int) -> AudioStats:
    """The :class:`AudioStats` of a waveform that is already decoded (no header)."""
    stats = AudioStats(sample_rate=int(sample_rate))
    stats.add(np.asarray(y, dtype=np.float32))
    return stats


def _wav_declared_frames(path: str) -> int | None:
    """The frames a RIFF/WAVE file's ``data`` chunk declares, when it declares more than the file
    holds (libsndfile then reports what is there, and a truncated WAV would pass unseen)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size)
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                    fh.seek(size % 2, os.SEEK_CUR)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):  # streamed: the writer did not know
                        return None
                    held = os.path.getsize(path) - fh.tell()
                    return size // block_align if size > held else None
                else:
                    fh.seek(size + size % 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def header_seconds(path: str | os.PathLike) -> float | None:
    """The length a file's header announces, in seconds (``None``: unknown): soundfile's frame
    count (a WAV's ``data`` chunk where it declares more than the file holds), else audioread's."""
    import soundfile as sf

    spath = os.fspath(path)
    try:
        info = sf.info(spath)
    except Exception:  # not a format libsndfile reads: audioread may know
        info = None
    if info is not None and info.samplerate > 0:
        declared = _wav_declared_frames(spath) if info.format == "WAV" else None
        return (declared if declared is not None else info.frames) / info.samplerate
    try:
        import audioread

        with audioread.audio_open(spath) as f:
            return float(f.duration) or None
    except Exception:  # no backend, or not audio: decoding says which
        return None


def decode_blocks(path: str | os.PathLike, sr: int = SR, stats: AudioStats | None = None,
                  block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono float32 blocks at ``sr`` Hz, :data:`BLOCK_SECONDS` of the file at a time.

    Joined, the blocks equal :func:`~genre_cls.data.audio.load_audio` ``(path, sr)``. ``stats``
    (an :class:`AudioStats`) is filled in as the blocks are read, with the header's length.

    Raises :class:`~genre_cls.data.audio.AudioDecodeError` as ``load_audio`` does: a missing,
    empty or undecodable file (before any block), and samples that are not audio (NaN, infinite
    or beyond :data:`~genre_cls.data.audio.MAX_ABS_SAMPLE`, whenever they come). A decoding error
    after some audio ends the blocks there and is recorded in ``stats.stopped``.
    """
    import soundfile as sf

    spath = os.fspath(path)
    stats = stats if stats is not None else AudioStats()
    stats.sample_rate = int(sr)
    check_audio_file(spath)
    stats.header_seconds = header_seconds(spath)
    try:
        sound = sf.SoundFile(spath)
    except Exception:  # not a format soundfile reads (or a broken header): audioread decodes it whole
        y = load_audio(spath, sr)
        stats.add(y)
        yield y
        return
    with sound:
        if (why := header_problem(int(sound.samplerate), int(sound.channels))) is not None:
            raise AudioDecodeError(spath, why)
        yield from _soundfile_blocks(sound, spath, int(sr), stats, block_seconds)


def _soundfile_blocks(sound, path: str, sr: int, stats: AudioStats, block_seconds: float) -> Iterator[np.ndarray]:
    native = int(sound.samplerate)
    frames = max(1, int(block_seconds * native))
    resampler = None
    if native != sr:
        import soxr

        resampler = soxr.ResampleStream(native, sr, 1, dtype="float32", quality=RESAMPLER)
    read = 0
    out = 0

    def next_block() -> np.ndarray | None:
        try:
            block = sound.read(frames, dtype="float32", always_2d=True)
        except Exception as exc:  # damaged after this point
            if read == 0:
                raise AudioDecodeError(path, one_line(exc, path) or type(exc).__name__) from exc
            stats.stopped = one_line(exc, path) or type(exc).__name__
            return None
        return block if len(block) else None

    block = next_block()
    if block is None:
        raise AudioDecodeError(path, "the file holds no audio samples")
    while block is not None:
        y = to_mono(block)
        if (why := sample_problem(y)) is not None:
            raise AudioDecodeError(path, why)
        read += len(y)
        following = next_block()
        last = following is None
        if resampler is not None:
            y = np.ascontiguousarray(resampler.resample_chunk(y, last=last), dtype=np.float32)
            if last:  # librosa.resample fixes the length: ceil(frames * ratio), zero-padded or trimmed
                want = int(np.ceil(read * (float(sr) / native)))
                y = y[: max(0, want - out)]
                if out + len(y) < want:
                    y = np.concatenate([y, np.zeros(want - out - len(y), dtype=np.float32)])
            if y.size and (why := sample_problem(y)) is not None:
                raise AudioDecodeError(path, why)
        out += len(y)
        if y.size:
            stats.add(y)
            yield y
        block = following
