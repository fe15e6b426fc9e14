"""Frame features for the segment models: 13 MFCC + centroid + 12 chroma + 7 contrast = 33.

The reference (:func:`reference_segment_features`) is librosa's own feature functions on one
3 s segment ``y`` (float32, 66,000 samples)::

    mfcc              = librosa.feature.mfcc(y=y, sr=22050, n_mfcc=13, n_fft=1024, hop_length=4084, center=False)
    spectral_centroid = librosa.feature.spectral_centroid(y=y, sr=22050, n_fft=1024, hop_length=4084, center=False)
    chroma_stft       = librosa.feature.chroma_stft(y=y, sr=22050, n_fft=1024, hop_length=4084, center=False)
    spectral_contrast = librosa.feature.spectral_contrast(y=y, sr=22050, n_fft=1024, hop_length=4084, center=False)

stacked as rows MFCC 1-13, centroid, chroma 1-12, contrast 1-7 and transposed to
``(16 frames, 33)``. That runs four STFTs per segment plus a tuning estimate, one segment
at a time.

The fast path (:func:`extract_segments`) computes the same numbers for a whole batch of
segments from ONE shared STFT, and stays equal to the reference because every step is
either per frame (and so indifferent to batching) or explicitly kept per segment:

* **STFT.** librosa frames the float32 segment, multiplies by the float64 Hann window,
  runs ``scipy.fft.rfft`` in float64 and stores complex64. We do exactly that for all
  frames of all segments in one call, so the complex spectrogram ``D`` is bit-identical.
  All four librosa features derive their spectrogram from this same ``D``: magnitude
  ``|D|`` for centroid and contrast, power ``|D|**2`` for the mel spectrogram and chroma.
* **MFCC.** mel power = power @ ``librosa.filters.mel(norm="slaney")``; ``power_to_db`` with
  ``ref=1, amin=1e-10, top_db=80`` where the top_db floor is relative to **each segment's
  own maximum** (the reference sees one segment); DCT-II, ``norm="ortho"``, first 13.
* **Centroid.** ``sum(freq * |D| / sum(|D|))`` per frame, the same float32/float64 mix as
  ``librosa.util.normalize(norm=1)``.
* **Chroma.** ``chroma_stft`` with ``tuning=None`` calls ``estimate_tuning(S=|D|**2)`` per
  segment: ``piptrack`` (per-frame peaks of the power spectrum between 150 and 4000 Hz that
  exceed 0.1 x the frame's maximum, refined by parabolic interpolation), then the median
  peak magnitude of the *segment* as threshold, then a 100-bin histogram of the strong
  peaks' deviations from the equal-tempered grid; its mode is the tuning, a multiple of
  0.01 bins. We replicate piptrack's arithmetic on the peak candidates only (same float32 /
  float64 promotions as librosa's numba stencils) and do the median and the histogram per
  segment with sorted keys and ``bincount``. Segments are then grouped by tuning and each
  group uses ``librosa.filters.chroma(tuning=...)`` (cached per value), followed by the
  per-frame max normalisation.
* **Contrast.** librosa's octave bands (fmin 200 Hz, 6 bands + the rest), per frame the mean
  of the lowest / highest ``max(1, rint(0.02 * band size))`` magnitudes, float32 means stored
  in float64, ``power_to_db(peak) - power_to_db(valley)`` with the top_db floor again per
  segment.

Filter-bank products run as one BLAS call per segment-sized operand layout (the mel product
batched over frames, the chroma product as a stacked ``fb @ S_i``) with BLAS pinned to one
thread, because OpenBLAS changes its summation order with its thread count. Measured on
this machine the float32 output is then bit-identical to the reference's float64 columns
rounded to float32 (when the reference also runs with one BLAS thread), and independent of
batch size, worker count and cache. Other BLAS builds may differ in the last bit of a
product, which is why the tests hold fast and reference to ``rtol=1e-5, atol=1e-4`` (MFCC
and contrast are in dB) rather than to equality; the tuning estimates must match exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from genre_cls.data.audio import (
    N_SEGMENTS,
    SEGMENT_SAMPLES,
    load_audio,
    segments as cut_segments,
)

log = logging.getLogger(__name__)

#: Bump whenever the feature pipeline changes: it is part of every cache key.
FEATURE_VERSION = "1"

__all__ = [
    "FEATURE_VERSION",
    "FeatureParams",
    "reference_segment_features",
    "extract_segments",
    "extract_track",
]


@dataclass(frozen=True)
class FeatureParams:
    """Framing of the 33 per-frame features (the paper's values are the defaults)."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 4084
    n_mfcc: int = 13
    n_chroma: int = 12
    n_bands: int = 6  # spectral contrast gives n_bands + 1 rows
    center: bool = False

    @property
    def n_features(self) -> int:
        return self.n_mfcc + 1 + self.n_chroma + self.n_bands + 1

    def n_frames(self, n_samples: int = SEGMENT_SAMPLES) -> int:
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- reference


def reference_segment_features(y: np.ndarray, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """The plain librosa reference for one segment: ``(frames, n_features)``, float64.

    Exactly ``librosa.feature.{mfcc, spectral_centroid, chroma_stft, spectral_contrast}``
    with ``y, sr, n_fft, hop_length, center`` (mfcc with ``n_mfcc``, chroma with
    ``n_chroma``, contrast with ``n_bands``; everything else librosa's default), stacked in
    the order MFCC, centroid, chroma, contrast and transposed.
    """
    import librosa

    p = params
    kw = dict(y=np.asarray(y), sr=p.sr, n_fft=p.n_fft, hop_length=p.hop_length, center=p.center)
    with warnings.catch_warnings():
        # librosa warns on a silent segment ("empty frequency set"); the value is still defined.
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        mfcc = librosa.feature.mfcc(n_mfcc=p.n_mfcc, **kw)
        centroid = librosa.feature.spectral_centroid(**kw)
        chroma = librosa.feature.chroma_stft(n_chroma=p.n_chroma, **kw)
        contrast = librosa.feature.spectral_contrast(n_bands=p.n_bands, **kw)
    return np.vstack([mfcc, centroid, chroma, contrast]).T


# --------------------------------------------------------------------------- fast path

_BANKS: dict[tuple, np.ndarray] = {}
_TLS = threading.local()


def _cached(key: tuple, build) -> np.ndarray:
    bank = _BANKS.get(key)
    if bank is None:
        bank = _BANKS[key] = build()
    return bank


def _window(n_fft: int) -> np.ndarray:
    import librosa

    def build():
        w = librosa.filters.get_window("hann", n_fft, fftbins=True)
        return np.ascontiguousarray(librosa.util.pad_center(w, size=n_fft))

    return _cached(("window", n_fft), build)


def _mel_bank_t(p: FeatureParams) -> np.ndarray:
    import librosa

    return _cached(
        ("mel", p.sr, p.n_fft),
        lambda: np.ascontiguousarray(librosa.filters.mel(sr=p.sr, n_fft=p.n_fft, norm="slaney").T),
    )


def _chroma_bank(p: FeatureParams, tuning: float) -> np.ndarray:
    import librosa

    return _cached(
        ("chroma", p.sr, p.n_fft, p.n_chroma, float(tuning)),
        lambda: librosa.filters.chroma(sr=p.sr, n_fft=p.n_fft, tuning=float(tuning), n_chroma=p.n_chroma),
    )


def _fft_freqs(sr: float, n_fft: int) -> np.ndarray:
    return _cached(("freqs", sr, n_fft), lambda: np.fft.rfftfreq(n=n_fft, d=1.0 / sr))


def _power_to_db_per_segment(x: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(x_i, ref=1.0, amin=1e-10, top_db)`` for each ``x[i]`` (any dtype)."""
    log_spec = 10.0 * np.log10(np.maximum(1e-10, x))
    # librosa subtracts 10*log10(max(amin, ref)) = 0.0 for ref=1.0: a no-op.
    floor = log_spec.reshape(log_spec.shape[0], -1).max(axis=1) - top_db
    return np.maximum(log_spec, floor.reshape((-1,) + (1,) * (x.ndim - 1)))


def _stft(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    """librosa.stft(x_i, n_fft, hop_length, center) for all rows, as (B, frames, bins) complex64."""
    import scipy.fft

    if p.center:
        # librosa pads centred frames with zeros (pad_mode="constant"): same frame values.
        x = np.pad(x, [(0, 0), (p.n_fft // 2, p.n_fft // 2)], mode="constant")
    if x.shape[-1] < p.n_fft:
        raise ValueError(f"segments of {x.shape[-1]} samples are shorter than n_fft={p.n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft, axis=-1)[:, :: p.hop_length]
    # float32 frames x float64 window -> float64, as librosa does; into a reused per-thread
    # buffer (fresh multi-MB allocations cost more in page faults than the FFT itself)
    buf = getattr(_TLS, "frames", None)
    if buf is None or buf.size < frames.size:
        buf = _TLS.frames = np.empty(frames.size, dtype=np.float64)
    windowed = buf[: frames.size].reshape(frames.shape)
    np.multiply(frames, _window(p.n_fft), out=windowed)
    spec = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)
    return spec.astype(np.complex64)


def _tunings(P: np.ndarray, p: FeatureParams) -> np.ndarray:
    """``librosa.estimate_tuning(S=P[i], sr, bins_per_octave=n_chroma)`` for each segment.

    ``P``: power spectrogram, (B, frames, bins) float32. Replicates piptrack (fmin=150,
    fmax=4000, threshold=0.1, ref=np.max per frame) on the candidate bins only.
    """
    B, T, F = P.shape
    # piptrack infers n_fft from the spectrogram (estimate_tuning passes n_fft=2048).
    n_fft_pt = 2048 if 2048 // 2 + 1 == F else 2 * (F - 1)
    freqs = _fft_freqs(p.sr, n_fft_pt)
    fmin, fmax = max(150.0, 0.0), min(4000.0, float(p.sr) / 2)
    rows = np.flatnonzero((fmin <= freqs) & (freqs < fmax))
    if rows.size == 0 or rows[0] < 1 or rows[-1] > F - 2:  # pragma: no cover - exotic params
        return _tunings_slow(P, p)
    k0, k1 = int(rows[0]), int(rows[-1]) + 1  # candidate rows [k0, k1); neighbours k0-1 .. k1

    ref_value = 0.1 * P.max(axis=-1, keepdims=True)  # float32, per frame
    W = P[..., k0 - 1 : k1 + 1]
    Z = W * (W > ref_value)
    zc = Z[..., 1:-1]
    peak = (zc > Z[..., :-2]) & (zc >= Z[..., 2:])  # librosa.util.localmax
    b, t, kk = np.nonzero(peak)
    if b.size == 0:
        return np.zeros(B)
    k = kk + k0
    x0 = P[b, t, k]
    xm = P[b, t, k - 1]
    xp = P[b, t, k + 1]
    # librosa's numba stencil: a = x[1] + x[-1] - 2 * x[0]; b = (x[1] - x[-1]) / 2 with
    # float32 + float32 -> float32 and int * float32 -> float64.
    a = (xp + xm).astype(np.float64) - 2.0 * x0.astype(np.float64)
    bb = (xp - xm).astype(np.float64) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(bb) >= np.abs(a), 0.0, -bb / a).astype(np.float32)
    avg = (xp - xm) / 2.0  # np.gradient, float32
    mags = x0 + 0.5 * avg * shift  # float32
    pitch = (((k + shift.astype(np.float64)) * float(p.sr)) / n_fft_pt).astype(np.float32)

    keep = pitch > 0
    if not keep.all():
        b, mags, pitch = b[keep], mags[keep], pitch[keep]
    counts = np.bincount(b, minlength=B)
    starts = np.cumsum(counts) - counts

    # per-segment median of the peak magnitudes (np.median, float32)
    bits = mags.view(np.uint32).astype(np.uint64)
    sortable = np.where(bits & 0x80000000, 0xFFFFFFFF ^ bits, bits | 0x80000000)
    keys = np.sort((b.astype(np.uint64) << np.uint64(32)) | sortable)
    sbits = keys & np.uint64(0xFFFFFFFF)
    sbits = np.where(sbits & 0x80000000, sbits ^ 0x80000000, 0xFFFFFFFF ^ sbits)
    svals = sbits.astype(np.uint32).view(np.float32)
    has = counts > 0
    n = counts[has]
    mid = starts[has] + n // 2
    hi = svals[mid]
    lo = svals[np.where(n % 2 == 0, mid - 1, mid)]
    med = np.where(n % 2 == 0, (lo + hi) / np.float32(2), hi).astype(np.float32)
    threshold = np.zeros(B, dtype=np.float32)
    threshold[has] = med

    strong = mags >= threshold[b]
    b, f = b[strong], pitch[strong]
    # pitch_tuning(resolution=0.01, bins_per_octave=n_chroma)
    octs = np.log2(f / (440.0 / 16))
    residual = np.mod(p.n_chroma * octs, 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / 0.01)) + 1)
    n_bins = edges.size - 1
    idx = np.searchsorted(edges, residual.astype(np.float64), side="right") - 1
    ok = (idx >= 0) & (idx < n_bins)
    hist = np.bincount(b[ok] * n_bins + idx[ok], minlength=B * n_bins).reshape(B, n_bins)
    tuning = edges[np.argmax(hist, axis=1)]
    tuning[np.bincount(b, minlength=B) == 0] = 0.0
    return tuning


def _tunings_slow(P: np.ndarray, p: FeatureParams) -> np.ndarray:  # pragma: no cover
    import librosa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        return np.array(
            [librosa.estimate_tuning(S=np.ascontiguousarray(s.T), sr=p.sr, bins_per_octave=p.n_chroma) for s in P]
        )


def _contrast(M: np.ndarray, p: FeatureParams, fmin: float = 200.0, quantile: float = 0.02) -> np.ndarray:
    """``librosa.feature.spectral_contrast(S=M[i].T)`` per segment: (B, frames, n_bands + 1)."""
    B, T, F = M.shape
    freq = _fft_freqs(p.sr, p.n_fft)
    octa = np.zeros(p.n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, p.n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * p.sr):
        raise ValueError("Frequency band exceeds Nyquist. Reduce either fmin or n_bands.")
    valley = np.zeros((B, T, p.n_bands + 1))
    peak = np.zeros_like(valley)
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        band = np.logical_and(freq >= f_low, freq <= f_high)
        nz = np.flatnonzero(band)
        if k > 0:
            band[nz[0] - 1] = True
        if k == p.n_bands:
            band[nz[-1] + 1 :] = True
        sel = np.flatnonzero(band)  # always a contiguous run of bins
        lo, hi = int(sel[0]), int(sel[-1]) + 1
        if k < p.n_bands:
            hi -= 1
        q = int(np.maximum(np.rint(quantile * np.sum(band)), 1))
        srt = np.sort(M[..., lo:hi], axis=-1)
        # float32 means, summed in ascending order like np.mean over librosa's sorted axis
        acc_v = srt[..., 0].copy()
        acc_p = srt[..., -q].copy()
        for j in range(1, q):
            acc_v += srt[..., j]
            acc_p += srt[..., j - q]
        valley[..., k] = acc_v / np.float32(q)
        peak[..., k] = acc_p / np.float32(q)
    return _power_to_db_per_segment(peak) - _power_to_db_per_segment(valley)


def _extract_block(x: np.ndarray, p: FeatureParams, out: np.ndarray) -> None:
    """Features of the segments ``x`` (B, samples) written into ``out`` (B, frames, n_features)."""
    import scipy.fft

    D = _stft(x, p)  # (B, T, F) complex64
    B, T, F = D.shape
    M = np.abs(D)  # magnitude, float32
    P = M**2  # power, float32
    c = 0

    # MFCC
    mel = (P.reshape(B * T, F) @ _mel_bank_t(p)).reshape(B, T, -1)  # float32
    mel_db = _power_to_db_per_segment(mel)
    mfcc = scipy.fft.dct(mel_db, axis=-1, type=2, norm="ortho")[..., : p.n_mfcc]
    out[..., c : c + p.n_mfcc] = mfcc
    c += p.n_mfcc

    # spectral centroid: librosa.util.normalize(|D|, norm=1) (float64 norm, float32 result),
    # then sum(freq * normalised) in float64
    length = M.sum(axis=-1, keepdims=True, dtype=np.float64)
    length[length < np.finfo(np.float32).tiny] = 1.0
    Sn = np.empty_like(M)
    np.divide(M, length, out=Sn, casting="unsafe")
    out[..., c] = Sn @ _fft_freqs(p.sr, p.n_fft)
    c += 1

    # chroma with per-segment tuning
    tuning = _tunings(P, p)
    raw = np.empty((B, T, p.n_chroma), dtype=np.float32)
    for tv in np.unique(tuning):
        sel = np.flatnonzero(tuning == tv)
        # fb @ S_i per segment (frequency-major S_i), the product librosa's einsum makes
        PT = P[sel].transpose(0, 2, 1) if sel.size < B else P.transpose(0, 2, 1)
        raw[sel] = np.matmul(_chroma_bank(p, float(tv)), PT).transpose(0, 2, 1)
    length = np.abs(raw).astype(np.float64).max(axis=-1, keepdims=True)
    length[length < np.finfo(np.float32).tiny] = 1.0
    out[..., c : c + p.n_chroma] = raw / length
    c += p.n_chroma

    # spectral contrast
    out[..., c:] = _contrast(M, p)


_BLAS = None


def _single_threaded_blas():
    """BLAS limited to one thread while features are computed.

    OpenBLAS sums a product in a different order depending on its thread count; with one
    thread the filter-bank products give the same bits whatever the batch size, in this
    process or in a worker (and the same bits as librosa's reference run single-threaded).
    Parallelism comes from our own threads / processes instead.
    """
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or failing: results stay within rounding
        return contextlib.nullcontext()


def extract_segments(
    segments: np.ndarray,
    params: FeatureParams = FeatureParams(),
    *,
    block: int = 64,
    threads: int | None = None,
) -> np.ndarray:
    """Features of a batch of segments: ``(S, samples) -> (S, frames, n_features)`` float32.

    Equal to :func:`reference_segment_features` applied to each row (as float32), within
    float32 rounding; see the module docstring. Segments are processed ``block`` at a time
    to bound memory, on ``threads`` threads (numpy and scipy.fft release the GIL; default:
    the number of CPUs, at most 8; 1 inside :func:`genre_cls.data.featureset.extract_dataset`'s worker processes).
    """
    x = np.asarray(segments, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected segments of shape (S, samples), got {x.shape}")
    n_frames = params.n_frames(x.shape[1])
    out = np.empty((x.shape[0], n_frames, params.n_features), dtype=np.float32)
    if threads is None:
        threads = min(os.cpu_count() or 1, 8)
    n = x.shape[0]
    threads = max(1, min(int(threads), n))
    n_blocks = max(-(-n // max(1, block)), threads)  # at least one block per thread
    block = max(1, -(-n // n_blocks))
    starts = range(0, n, block)

    def run(s: int) -> None:
        xb = x[s : s + block]
        if not np.isfinite(np.sum(xb, dtype=np.float64)):
            raise ValueError("segments hold non-finite samples")
        _extract_block(xb, params, out[s : s + block])

    with _single_threaded_blas():
        if threads == 1:
            for s in starts:
                run(s)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(run, starts))
    return out


def extract_track(source: str | os.PathLike | np.ndarray, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Features of one track: a path (decoded at ``params.sr``) or a 1-D float waveform at 22,050 Hz.

    The track is padded/trimmed to 660,000 samples and cut into 10 segments of 66,000;
    returns float32 ``(10, 16, 33)``. A path that cannot be decoded raises
    :class:`~genre_cls.data.audio.AudioDecodeError`.
    """
    if isinstance(source, (str, os.PathLike)):
        y = load_audio(source, sr=params.sr)
    else:
        y = np.asarray(source, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected a path or a 1-D waveform, got an array of shape {y.shape}")
    return extract_segments(cut_segments(y, N_SEGMENTS, SEGMENT_SAMPLES), params, threads=1)


def warm(p: FeatureParams = FeatureParams()) -> None:
    """Build the filter banks and import the decoders once (forked workers then inherit them)."""
    import librosa  # noqa: F401  (imported once in the parent, inherited by forked workers)
    import soundfile  # noqa: F401

    _window(p.n_fft)
    _mel_bank_t(p)
    _fft_freqs(p.sr, p.n_fft)
