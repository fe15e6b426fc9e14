"""The fast feature path against librosa's plain reference, and the cached data set build."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import features as F
from genre_cls.data.audio import SR, load_audio, segments
from genre_cls.data.features import (
    FEATURE_VERSION,
    FeatureParams,
    FeatureSet,
    extract_dataset,
    extract_segments,
    extract_track,
    reference_segment_features,
)

GTZAN_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "gtzan-sample"

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


def _gtzan_clips(n: int = 3) -> list[Path]:
    clips = sorted((GTZAN_SAMPLE / "genres_original").glob("*/*.wav"))
    if not clips:
        pytest.skip(f"no GTZAN sample under {GTZAN_SAMPLE}")
    return clips[:: max(1, len(clips) // n)][:n]


def test_fast_equals_reference_on_gtzan_sample():
    for clip in _gtzan_clips(3):
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


# --------------------------------------------------------------------------- extract_dataset


def _write_tracks(root: Path, n: int = 3, seconds: float = 4.0) -> list[str]:
    paths = []
    t = np.arange(int(seconds * SR)) / SR
    for i in range(n):
        y = 0.2 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.01 * np.random.default_rng(i).standard_normal(t.size)
        p = root / f"g{i}.0000{i}.wav"
        sf.write(p, y.astype(np.float32), SR)
        paths.append(str(p))
    return paths


def _corrupt(root: Path) -> str:
    p = root / "jazz.00054.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x00" * 200)
    return str(p)


def test_extract_dataset_skips_corrupt_with_one_warning(tmp_path):
    paths = _write_tracks(tmp_path, 2)
    bad = _corrupt(tmp_path)
    with pytest.warns(UserWarning) as rec:
        fs = extract_dataset([paths[0], bad, paths[1]], workers=0, progress=False)
    msgs = [str(w.message) for w in rec if "skipping" in str(w.message)]
    assert len(msgs) == 1 and bad in msgs[0]
    assert isinstance(fs, FeatureSet)
    assert fs.paths == fs.ok == [paths[0], paths[1]] and list(fs.skipped) == [bad]
    assert fs.features.shape == (2, 10, 16, 33) and fs.features.dtype == np.float32
    np.testing.assert_allclose(fs.features[1], extract_track(paths[1]), rtol=1e-6, atol=1e-5)


def test_extract_dataset_cache_hit_and_invalidation(tmp_path, monkeypatch):
    paths = _write_tracks(tmp_path, 3)
    cache = tmp_path / "cache"
    first = extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    files = list((cache / "features").glob("*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("extraction ran although the cache is warm")

    with monkeypatch.context() as m:
        m.setattr(F, "_extract_chunk", boom)
        second = extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    np.testing.assert_array_equal(first.features, second.features)
    assert second.paths == paths and second.skipped == {}

    # a changed file (new size and mtime) gives a new key: rebuilt, not the stale result
    y = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(SR * 5) / SR)
    sf.write(paths[1], y.astype(np.float32), SR)
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    calls = []
    real = F._extract_chunk
    with monkeypatch.context() as m:
        m.setattr(F, "_extract_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
        third = extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    assert calls
    np.testing.assert_array_equal(third.features[0], first.features[0])
    assert not np.array_equal(third.features[1], first.features[1])
    np.testing.assert_allclose(third.features[1], extract_track(paths[1]), rtol=1e-6, atol=1e-5)
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_truncated_cache_is_rebuilt(tmp_path, monkeypatch):
    paths = _write_tracks(tmp_path, 2)
    cache = tmp_path / "cache"
    first = extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    (file,) = (cache / "features").glob("*.npz")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    calls = []
    real = F._extract_chunk
    monkeypatch.setattr(F, "_extract_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    assert calls
    np.testing.assert_array_equal(again.features, first.features)
    assert file.stat().st_size == len(data)  # rewritten whole


def test_cache_key_covers_params(tmp_path):
    paths = _write_tracks(tmp_path, 1)
    cache = tmp_path / "cache"
    extract_dataset(paths, cache_dir=cache, workers=0, progress=False)
    other = extract_dataset(paths, FeatureParams(n_mfcc=20), cache_dir=cache, workers=0, progress=False)
    assert other.features.shape == (1, 10, 16, 40)
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_extract_dataset_worker_processes(tmp_path):
    paths = _write_tracks(tmp_path, 3)
    bad = _corrupt(tmp_path)
    with pytest.warns(UserWarning, match="jazz.00054"):
        fs = extract_dataset(paths + [bad], workers=2, progress=True)
    assert fs.paths == paths and list(fs.skipped) == [bad]
    inproc = extract_dataset(paths, workers=0, progress=False)
    # equal bits on this machine (BLAS pinned to one thread); allow a last-bit BLAS difference
    np.testing.assert_allclose(fs.features, inproc.features, rtol=1e-6, atol=1e-5)
