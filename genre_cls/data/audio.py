"""Audio decoding and the fixed 30 s / 3 s framing that the segment models (Net5, Net6) use.

Every track becomes 660,000 samples at 22,050 Hz mono (padded with zeros or trimmed at the
end) and is cut into 10 consecutive segments of 66,000 samples (about 3 s each).

Decoding goes through soundfile first (wav, au, flac, ogg, ...) and falls back to
``librosa.load`` (audioread: mp3 and whatever ffmpeg / gstreamer can read) only when
soundfile cannot open the file. The result equals ``librosa.load(path, sr=22050)`` within
float tolerance: the same downmix (mean over channels) and the same resampler
(``librosa.resample``, soxr_hq). Anything that does not decode to a non-empty, finite
waveform whose samples are within :data:`MAX_ABS_SAMPLE` raises :class:`AudioDecodeError`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from genre_cls.errors import one_line

SR = 22050
TRACK_SAMPLES = 660_000
N_SEGMENTS = 10
SEGMENT_SAMPLES = 66_000
#: The largest sample magnitude accepted as audio. Decoded PCM lies within [-1, 1]; float files
#: may overshoot a little (unclipped masters). A sample beyond 1000 is not audio (1e30 in a float
#: wav passes decoding but overflows the features to NaN), so such a file is skipped.
MAX_ABS_SAMPLE = 1e3

__all__ = [
    "SR",
    "TRACK_SAMPLES",
    "N_SEGMENTS",
    "SEGMENT_SAMPLES",
    "MAX_ABS_SAMPLE",
    "AudioDecodeError",
    "header_problem",
    "header_seconds",
    "content_problem",
    "check_audio_file",
    "sample_problem",
    "to_mono",
    "load_audio",
    "fix_length",
    "segments",
    "windows",
    "CLIPS",
    "clip_audio",
]

#: Where the clip a model sees is taken from a longer track (``data.clip``).
CLIPS = ("first", "middle")
#: The sample rates and channel counts a file's header may claim: recorded audio lies within these
#: (telephone 8 kHz to 768 kHz masters; up to 7th-order ambisonics); a header beyond them lies, and
#: its samples read with it would be nonsense (4 GHz: a 30 s song becomes a few samples).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MAX_CHANNELS = 1_000, 768_000, 256
#: What a file that is plainly not audio starts with, and what it is.
NOT_AUDIO = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-zip archive"),
)
#: How audio files begin (WAV/AIFF, FLAC, Ogg, MP3 with a tag, AU): such a file is audio, damaged or
#: not, and the decoders say what is wrong with it (its text would otherwise read as a text file).
AUDIO_MAGIC = (b"RIFF", b"FORM", b"fLaC", b"OggS", b"ID3", b".snd")


class AudioDecodeError(ValueError):
    """A file that is missing, unreadable, empty or not audio. The message is one line."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split()) or "unknown error"
        super().__init__(
            f"cannot decode audio file {self.path}: {self.reason}; "
            "check that it is a readable, non-empty audio file (wav, au, flac, ogg, mp3) "
            "or remove it from the input"
        )


def header_problem(samplerate: int, channels: int) -> str | None:
    """Why a header's sample rate or channel count cannot be the file's (``None`` when it can)."""
    if not MIN_SAMPLE_RATE <= samplerate <= MAX_SAMPLE_RATE:
        return (f"its header claims a sample rate of {samplerate:,} Hz (audio has {MIN_SAMPLE_RATE:,} to "
                f"{MAX_SAMPLE_RATE:,}): the file is damaged or not what its header says")
    if not 1 <= channels <= MAX_CHANNELS:
        return (f"its header claims {channels:,} channels (audio has 1 to {MAX_CHANNELS}): the file is damaged or not "
                "what its header says")
    return None


def content_problem(path: str | os.PathLike) -> str | None:
    """What a file is when its first bytes show that it is plainly not audio (an HTML page, a text
    file, an image, an archive, saved under an audio name), else ``None``; decoders would answer it
    with a misleading message ("File does not exist or is not a regular file") and chatter on stderr."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None  # the decoders say why it cannot be read
    if head.startswith(AUDIO_MAGIC):
        return None
    for magic, what in NOT_AUDIO:
        if head.startswith(magic):
            return f"it is {what}, not audio"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the 512th byte
            return None
        text = head[: exc.start].decode("utf-8")
    if not text or any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return None
    start = text.lstrip("\ufeff \t\r\n").lower()
    what = ("an HTML page" if start.startswith(("<!doctype html", "<html")) else "an XML file" if start.startswith("<?xml")
            else "a JSON file" if start.startswith(("{", "[")) else "a text file")
    return f"it is {what}, not audio"


def header_seconds(path: str | os.PathLike) -> float | None:
    """The length of an audio file from its header (soundfile), without decoding; ``None`` when
    the header cannot say."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # a format libsndfile does not read: unknown here
        return None
    return info.frames / info.samplerate if info.samplerate > 0 and info.frames > 0 else None


def to_mono(y: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) -> (n,) float32, downmixed by mean like ``librosa.to_mono``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        # librosa reads (channels, n) and averages over axis 0; same arithmetic here.
        y = np.mean(y.T, axis=0) if y.shape[1] > 1 else y[:, 0]
    return np.ascontiguousarray(y, dtype=np.float32)


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(path) as f:
        sr_native = int(f.samplerate)
        if (why := header_problem(sr_native, int(f.channels))) is not None:
            raise AudioDecodeError(path, why)
        y = f.read(dtype="float32", always_2d=True)
    return to_mono(y), sr_native


def _read_fallback(path: str, sr: int) -> np.ndarray:
    """audioread through librosa.load, without librosa's 'PySoundFile failed' chatter."""
    import audioread
    import librosa

    with audioread.audio_open(path) as f:  # its header, which librosa.load would resample by without a look
        if (why := header_problem(int(f.samplerate), int(f.channels))) is not None:
            raise AudioDecodeError(path, why)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"PySoundFile failed")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"librosa")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        y, _ = librosa.load(path, sr=sr, mono=True, dtype=np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


def sample_problem(y: np.ndarray) -> str | None:
    """Why a decoded waveform is not usable audio (``None`` when it is): no samples, a NaN or an
    infinity, or a sample beyond :data:`MAX_ABS_SAMPLE`."""
    if y.size == 0:
        return "the file holds no audio samples"
    peak = float(np.max(np.abs(y)))
    if not np.isfinite(peak):
        return "the file holds non-finite samples (NaN or infinity)"
    if peak > MAX_ABS_SAMPLE:
        return f"its samples are too large to be audio (peak {peak:.3g}, audio lies within [-1, 1]; limit {MAX_ABS_SAMPLE:g})"
    return None


def check_audio_file(path: str) -> None:
    """Raise :class:`AudioDecodeError` for a path that is no file, an empty file, or a file whose
    first bytes show it is plainly not audio (:func:`content_problem`), before any decoder runs."""
    if not Path(path).is_file():
        raise AudioDecodeError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(path, "the file is empty (0 bytes)")
    if (what := content_problem(path)) is not None:
        raise AudioDecodeError(path, what)


def load_audio(path: str | os.PathLike, sr: int = SR) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform at ``sr`` Hz.

    Equals ``librosa.load(path, sr=sr)[0]`` within float tolerance. Raises
    :class:`AudioDecodeError` (a ``ValueError``) when the file is missing, cannot be decoded
    by soundfile nor audioread, holds no samples, or holds non-finite samples or samples too
    large to be audio (:func:`sample_problem`), checked before and after resampling.
    """
    spath = os.fspath(path)
    check_audio_file(spath)

    import soundfile as sf

    y: np.ndarray | None = None
    try:
        y, sr_native = _read_soundfile(spath)
    except AudioDecodeError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        soundfile_error = exc
        try:
            y = _read_fallback(spath, sr)
        except AudioDecodeError:
            raise
        except Exception as exc2:  # audioread raises many types (NoBackendError, EOFError...)
            # audioread's errors often carry no message: soundfile's then says what is wrong.
            reason = str(exc2) or f"{one_line(soundfile_error, spath)} ({type(exc2).__name__} in the fallback decoder)"
            if type(exc2).__name__ == "NoBackendError":
                reason = f"not a recognised audio format ({soundfile_error})"
            raise AudioDecodeError(spath, reason) from exc2
    except Exception as exc:  # malformed headers can surface as other errors
        raise AudioDecodeError(spath, str(exc) or type(exc).__name__) from exc
    else:
        if (why := sample_problem(y)) is not None:
            raise AudioDecodeError(spath, why)
        if sr_native != sr:
            import librosa

            y = librosa.resample(y, orig_sr=sr_native, target_sr=sr)
            y = np.ascontiguousarray(y, dtype=np.float32)

    if y is None:
        raise AudioDecodeError(spath, "the file holds no audio samples")
    if (why := sample_problem(y)) is not None:
        raise AudioDecodeError(spath, why)
    return y


def fix_length(y: np.ndarray, n: int = TRACK_SAMPLES) -> np.ndarray:
    """``y`` zero-padded at the end or trimmed to exactly ``n`` samples (float32)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {y.shape}")
    if y.shape[0] >= n:
        return np.ascontiguousarray(y[:n])
    out = np.zeros(n, dtype=np.float32)
    out[: y.shape[0]] = y
    return out


def segments(
    y: np.ndarray, n_segments: int = N_SEGMENTS, segment_samples: int = SEGMENT_SAMPLES
) -> np.ndarray:
    """The track fixed to ``n_segments * segment_samples`` samples, as ``(n_segments, segment_samples)``."""
    return fix_length(y, n_segments * segment_samples).reshape(n_segments, segment_samples)


def windows(y: np.ndarray, window: int = TRACK_SAMPLES) -> np.ndarray:
    """Consecutive, non-overlapping ``window``-sample windows of ``y``, as ``(W, window)``.

    Used to classify audio of any length with models trained on 30 s clips:

    * ``len(y) <= window``: one window, zero-padded at the end.
    * longer: every full window ``y[i*window:(i+1)*window]``; the remainder after the last
      full window becomes one more zero-padded window when it is at least half a window
      long, and is dropped otherwise (a short tail would be mostly padding and would bias
      the track's vote). So 95 s at 30 s windows gives 3 windows (the 5 s tail is dropped),
      and 50 s gives 2 (the 20 s tail is kept).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {y.shape}")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    n = y.shape[0]
    if n <= window:
        return fix_length(y, window)[None, :]
    n_full, rest = divmod(n, window)
    n_win = n_full + (1 if 2 * rest >= window else 0)
    out = np.zeros((n_win, window), dtype=np.float32)
    flat = out.reshape(-1)
    take = min(n, n_win * window)
    flat[:take] = y[:take]
    return out


def clip_audio(y: np.ndarray, sr: int, seconds: float | None, where: str = "first") -> np.ndarray:
    """The part of a decoded track that the models see: its ``first`` or ``middle`` ``seconds``.

    A track no longer than ``seconds`` (or ``seconds=None``) is returned whole; GTZAN's 30 s
    clips are never cut. Collections of full songs (``data=folders``, FMA) choose the middle
    to skip intros.
    """
    if where not in CLIPS:
        raise ValueError(f"unknown clip position {where!r}: choose one of {', '.join(CLIPS)}")
    if seconds is None:
        return y
    n = int(round(float(seconds) * sr))
    if n <= 0 or y.shape[0] <= n:
        return y
    start = 0 if where == "first" else (y.shape[0] - n) // 2
    return np.ascontiguousarray(y[start : start + n])
