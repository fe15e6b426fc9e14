"""The cached data set build: skipped files, cache hits, stale and damaged caches, workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import featureset as F
from genre_cls.data.audio import SR
from genre_cls.data.features import FeatureParams, extract_track
from genre_cls.data.featureset import FeatureSet, extract_dataset
from genre_cls.data.context import BuildContext


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
        fs = extract_dataset([paths[0], bad, paths[1]], context=BuildContext(workers=0, progress=False))
    msgs = [str(w.message) for w in rec if "skipping" in str(w.message)]
    assert len(msgs) == 1 and bad in msgs[0]
    assert isinstance(fs, FeatureSet)
    assert fs.paths == fs.ok == [paths[0], paths[1]] and list(fs.skipped) == [bad]
    assert fs.features.shape == (2, 10, 16, 33) and fs.features.dtype == np.float32
    np.testing.assert_allclose(fs.features[1], extract_track(paths[1]), rtol=1e-6, atol=1e-5)


def test_extract_dataset_cache_hit_and_invalidation(tmp_path, monkeypatch):
    paths = _write_tracks(tmp_path, 3)
    cache = tmp_path / "cache"
    first = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    files = list((cache / "features").glob("*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("extraction ran although the cache is warm")

    with monkeypatch.context() as m:
        m.setattr(F, "_extract_chunk", boom)
        second = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
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
        third = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    assert calls
    np.testing.assert_array_equal(third.features[0], first.features[0])
    assert not np.array_equal(third.features[1], first.features[1])
    np.testing.assert_allclose(third.features[1], extract_track(paths[1]), rtol=1e-6, atol=1e-5)
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_truncated_cache_is_rebuilt(tmp_path, monkeypatch):
    paths = _write_tracks(tmp_path, 2)
    cache = tmp_path / "cache"
    first = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    (file,) = (cache / "features").glob("*.npz")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    calls = []
    real = F._extract_chunk
    monkeypatch.setattr(F, "_extract_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    assert calls
    np.testing.assert_array_equal(again.features, first.features)
    assert file.stat().st_size == len(data)  # rewritten whole


def test_cache_key_covers_params(tmp_path):
    paths = _write_tracks(tmp_path, 1)
    cache = tmp_path / "cache"
    extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    other = extract_dataset(paths, FeatureParams(n_mfcc=20), context=BuildContext(cache_dir=cache, workers=0, progress=False))
    assert other.features.shape == (1, 10, 16, 40)
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_extract_dataset_worker_processes(tmp_path):
    paths = _write_tracks(tmp_path, 3)
    bad = _corrupt(tmp_path)
    with pytest.warns(UserWarning, match="jazz.00054"):
        fs = extract_dataset(paths + [bad], context=BuildContext(workers=2, progress=True))
    assert fs.paths == paths and list(fs.skipped) == [bad]
    inproc = extract_dataset(paths, context=BuildContext(workers=0, progress=False))
    # equal bits on this machine (BLAS pinned to one thread); allow a last-bit BLAS difference
    np.testing.assert_allclose(fs.features, inproc.features, rtol=1e-6, atol=1e-5)


def test_tracks_whose_features_are_not_finite_are_skipped_and_never_cached(tmp_path, monkeypatch):
    paths = _write_tracks(tmp_path, 2)
    real = F.extract_segments

    def first_track_nan(segs, params, threads=1):
        out = real(segs, params, threads=threads)
        out[:10] = np.nan  # the first track's ten segments
        return out

    monkeypatch.setattr(F, "extract_segments", first_track_nan)
    with pytest.warns(UserWarning, match=f"skipping {paths[0]}: unusable audio \\(its features are not finite"):
        fs = extract_dataset(paths, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert fs.paths == [paths[1]] and "not finite" in fs.skipped[paths[0]]
    assert np.isfinite(fs.features).all()
    (cache,) = (tmp_path / "cache" / "features").glob("*.npz")
    with np.load(cache) as npz:
        assert np.isfinite(npz["features"]).all() and npz["features"].shape[0] == 1


def test_a_cache_holding_nan_is_rebuilt_not_loaded(tmp_path):
    paths = _write_tracks(tmp_path, 2)
    fresh = extract_dataset(paths, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    (cache,) = (tmp_path / "cache" / "features").glob("*.npz")
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["features"][0, 0, 0, 0] = np.nan  # what a version without the check could cache
    np.savez(cache, **arrays)
    again = extract_dataset(paths, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    np.testing.assert_array_equal(again.features, fresh.features)


def _build_alongside_another(paths: list[str], cache: str, barrier, result: str) -> None:
    """One of two processes building the same feature cache, held in step with the other by
    ``barrier``: both miss the cache and extract, both open their cache file, both write it
    whole, and only then does either rename it into place."""
    import json

    from genre_cls.data import featureset

    extract, savez = featureset._extract_chunk, np.savez
    seen: list[str] = []

    def extract_in_step(*args, **kwargs):
        barrier.wait(timeout=120)  # both processes found no cache and build it
        return extract(*args, **kwargs)

    def savez_in_step(file, **arrays):
        barrier.wait(timeout=120)  # both have a temporary file open
        savez(file, **arrays)
        barrier.wait(timeout=120)  # both wrote theirs; neither is renamed yet
        seen.extend(sorted(os.listdir(Path(cache) / "features")))
        barrier.wait(timeout=120)

    featureset._extract_chunk = extract_in_step
    np.savez = savez_in_step
    fs = extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False))
    np.save(result + ".npy", fs.features)
    Path(result + ".json").write_text(json.dumps({"paths": fs.paths, "seen": seen}))


def test_two_processes_building_the_same_cache_at_once_both_succeed_and_leave_one_file(tmp_path, monkeypatch):
    import json
    import multiprocessing

    paths = _write_tracks(tmp_path, 3)
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_build_alongside_another, args=(paths, str(cache), barrier, str(tmp_path / name)))
        for name in ("a", "b")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]

    a, b = (np.load(tmp_path / f"{name}.npy") for name in ("a", "b"))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, extract_dataset(paths, context=BuildContext(workers=0, progress=False)).features, rtol=1e-6, atol=1e-5)
    for name in ("a", "b"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["paths"] == paths
        # The writes really overlapped: both temporary files existed at once, and no cache file yet.
        tmp_files = [f for f in report["seen"] if f.endswith(".tmp")]
        assert len(tmp_files) == 2 and len(report["seen"]) == 2, report["seen"]

    files = list((cache / "features").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz", files  # one cache file, no temporary one left
    monkeypatch.setattr(F, "_extract_chunk", lambda *a, **k: pytest.fail("the cache both processes wrote is not valid"))
    np.testing.assert_array_equal(extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=0, progress=False)).features, a)


def test_clip_chooses_the_part_of_a_long_track_that_is_cut_into_segments(tmp_path):
    from genre_cls.data.audio import clip_audio, load_audio, segments
    from genre_cls.data.features import extract_segments

    (path,) = _write_tracks(tmp_path, 1, seconds=6.0)
    cache = tmp_path / "cache"
    whole = extract_dataset([path], context=BuildContext(cache_dir=cache, workers=0, progress=False))
    middle = extract_dataset([path], context=BuildContext(cache_dir=cache, workers=0, progress=False, clip="middle", clip_seconds=2.0))
    expected = extract_segments(segments(clip_audio(load_audio(path), SR, 2.0, "middle")), threads=1)
    np.testing.assert_allclose(middle.features[0], expected, rtol=1e-6, atol=1e-5)
    assert not np.allclose(middle.features, whole.features)
    assert len(list((cache / "features").glob("*.npz"))) == 2  # the clip is part of the cache key
    with pytest.raises(ValueError, match="unknown clip position 'end'"):
        extract_dataset([path], context=BuildContext(clip="end", clip_seconds=2.0, progress=False))
