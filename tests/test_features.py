"""The fast feature path against librosa's plain reference, and the cached data set build."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import features as F
from genre_cls.data.audio import SR, load_audio, segments
from genre_cls.data.features import (
    FEATURE_VERSION,
    FeatureParams,
    extract_segments,
    extract_track,
    reference_segment_features,
)


# float32 rounding of the reference's float64 columns; MFCC and contrast are in dB.
RTOL, ATOL = 1e-5, 1e-4


def _synthetic_segments() -> np.ndarray:
    """Seeded mixes of tones, noise and silence; one silent segment; detuned tones."""
    t = np.arange(66_000) / SR
    out = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        detune = 2 ** (0.3 / 12) if seed % 2 else 1.0  # a third of a semitone sharp
        y = rng.uniform(0.001, 0.1) * rng.standard_normal(t.size)
        for f in rng.choice([220.0, 261.63, 329.63, 440.0, 587.33, 880.0, 1318.5], 3, replace=False):
            y += rng.uniform(0.05, 0.4) * np.sin(2 * np.pi * f * detune * t + rng.uniform(0, 6))
        start = int(rng.integers(0, 40_000))
        y[start : start + int(rng.integers(5_000, 20_000))] = 0.0  # a silent stretch
        out.append(y)
    out.append(np.zeros(t.size))  # a silent segment
    tone = 0.3 * np.sin(2 * np.pi * 440 * 2 ** (0.3 / 12) * t)  # pure detuned A
    out.append(tone)
    quiet = 1e-6 * np.random.default_rng(99).standard_normal(t.size)  # near silence
    out.append(quiet)
    return np.stack(out).astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    return np.stack([reference_segment_features(s) for s in x])


def _tunings_reference(x: np.ndarray) -> np.ndarray:
    import librosa

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in x:
            S = np.abs(librosa.stft(s, n_fft=1024, hop_length=4084, center=False)) ** 2
            out.append(librosa.estimate_tuning(S=S, sr=SR, bins_per_octave=12))
    return np.array(out)


@pytest.fixture(scope="module")
def synthetic():
    x = _synthetic_segments()
    return x, _reference(x)


def test_params():
    p = FeatureParams()
    assert (p.sr, p.n_fft, p.hop_length, p.n_mfcc, p.n_chroma, p.n_bands, p.center) == (
        22050, 1024, 4084, 13, 12, 6, False,
    )
    assert p.n_features == 33 and p.n_frames() == 16
    assert p.as_dict()["hop_length"] == 4084
    assert isinstance(FEATURE_VERSION, str) and FEATURE_VERSION


def test_reference_is_librosa(synthetic):
    import librosa

    x, ref = synthetic
    y = x[0]
    kw = dict(y=y, sr=22050, n_fft=1024, hop_length=4084, center=False)
    assert ref.shape == (len(x), 16, 33)
    np.testing.assert_array_equal(ref[0, :, :13], librosa.feature.mfcc(n_mfcc=13, **kw).T)
    np.testing.assert_array_equal(ref[0, :, 13], librosa.feature.spectral_centroid(**kw)[0])
    np.testing.assert_array_equal(ref[0, :, 14:26], librosa.feature.chroma_stft(**kw).T)
    np.testing.assert_array_equal(ref[0, :, 26:], librosa.feature.spectral_contrast(**kw).T)


def test_fast_equals_reference_on_synthetic(synthetic):
    x, ref = synthetic
    fast = extract_segments(x)
    assert fast.shape == ref.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, rtol=RTOL, atol=ATOL)
    # chroma is a ratio in [0, 1]; with the same tuning it matches to float32 rounding
    np.testing.assert_allclose(fast[..., 14:26], ref[..., 14:26], rtol=0, atol=1e-6)


def test_per_segment_tuning_matches_librosa(synthetic):
    x, _ = synthetic
    P = np.abs(F._stft(x, FeatureParams())) ** 2
    fast = F._tunings(P, FeatureParams())
    ref = _tunings_reference(x)
    np.testing.assert_array_equal(fast, ref)
    assert len(set(ref.round(2))) > 2  # the mix really has different tunings
    assert fast[6] == 0.0  # silent segment: librosa's fallback


def test_batching_keeps_per_segment_steps(synthetic):
    """A segment's features do not depend on which other segments share the batch."""
    x, _ = synthetic
    together = extract_segments(x, block=len(x), threads=1)
    alone = np.concatenate([extract_segments(s[None]) for s in x])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-5)
    scaled = x.copy()
    scaled[0] *= 1e-3  # a quiet neighbour must not move the others' top_db floors
    np.testing.assert_allclose(extract_segments(scaled)[1:], together[1:], rtol=1e-6, atol=1e-5)


def test_column_order(synthetic):
    x, ref = synthetic
    fast = extract_segments(x[:2])
    import librosa

    cent = librosa.feature.spectral_centroid(y=x[1], sr=SR, n_fft=1024, hop_length=4084, center=False)[0]
    np.testing.assert_allclose(fast[1, :, 13], cent, rtol=1e-6)
    c0 = librosa.feature.mfcc(y=x[1], sr=SR, n_mfcc=13, n_fft=1024, hop_length=4084, center=False)[0]
    np.testing.assert_allclose(fast[1, :, 0], c0, rtol=RTOL, atol=ATOL)


def test_fast_equals_reference_on_gtzan_sample(gtzan_sample):
    clips = sorted((gtzan_sample / "genres_original").glob("*/*.wav"))
    assert len(clips) >= 3, f"the GTZAN sample at {gtzan_sample} holds {len(clips)} clips"
    for clip in clips[:: len(clips) // 3][:3]:
        x = segments(load_audio(clip))
        fast = extract_track(clip)
        assert fast.shape == (10, 16, 33) and fast.dtype == np.float32
        np.testing.assert_allclose(fast, _reference(x), rtol=RTOL, atol=ATOL, err_msg=str(clip))


def test_extract_track_from_waveform_and_path(tmp_path):
    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal(SR * 12)).astype(np.float32)  # 12 s: padded to 30 s
    path = tmp_path / "clip.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    a = extract_track(y)
    b = extract_track(path)
    c = extract_track(y.astype(np.float64))
    assert a.shape == (10, 16, 33) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert np.isfinite(a).all()
    with pytest.raises(ValueError):
        extract_track(np.zeros((2, 100)))
