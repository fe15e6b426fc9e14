"""The decoded-waveform cache (genre_cls/data/waveforms.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import waveformset as wf
from genre_cls.data.audio import load_audio
from genre_cls.data.waveformset import PCM_SCALE, build_waveforms, to_pcm16
from genre_cls.data.context import BuildContext

SR = 22050


@pytest.fixture
def tracks(tmp_path):
    """Four short wavs (one at 44.1 kHz stereo, one longer than the clip), a corrupt wav, a NaN float wav."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = []
    for i, (seconds, sr, channels) in enumerate([(1.0, SR, 1), (0.5, 44100, 2), (2.5, SR, 1), (0.7, SR, 1)]):
        y = 0.4 * rng.standard_normal((int(seconds * sr), channels)).astype(np.float32)
        path = folder / f"t{i}.wav"
        sf.write(path, y, sr, subtype="PCM_16")
        paths.append(str(path))
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200))
    nan = folder / "nan.wav"
    y = np.zeros(SR // 2, dtype=np.float32)
    y[100] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    return paths[:2] + [str(corrupt)] + paths[2:] + [str(nan)]


def build(paths, cache, **kw):
    kw.setdefault("workers", 0)
    with pytest.warns(UserWarning, match="skipping"):
        return build_waveforms(paths, context=BuildContext(clip_seconds=2.0, cache_dir=cache, progress=False, **kw))


def test_cache_equals_a_direct_decode_within_int16_quantisation(tracks, tmp_path):
    ws = build(tracks, tmp_path / "cache")
    good = [p for p in tracks if "corrupt" not in p and "nan" not in p]
    assert ws.paths == good and ws.sample_rate == SR and len(ws) == 4
    for i, path in enumerate(good):
        y = load_audio(path)[: 2 * SR]  # the clip: the first 2 s
        assert ws.lengths[i] == len(y)
        assert np.abs(ws.track(i) - y).max() <= 0.5 / PCM_SCALE + 1e-7
    assert ws.lengths.tolist() == [SR, SR // 2, 2 * SR, int(0.7 * SR)]
    assert ws.offsets.tolist() == [0, SR, SR + SR // 2, 3 * SR + SR // 2]
    assert ws.audio.shape == (int(ws.lengths.sum()),) and ws.audio.dtype == np.int16


def test_the_middle_clip_and_whole_tracks(tracks, tmp_path):
    long = tracks[3]
    middle = build_waveforms([long], context=BuildContext(clip_seconds=1.0, clip="middle", cache_dir=tmp_path, workers=0, progress=False))
    y = load_audio(long)
    assert np.abs(middle.track(0) - y[int(0.75 * SR) : int(1.75 * SR)]).max() <= 0.5 / PCM_SCALE + 1e-7
    whole = build_waveforms([long], context=BuildContext(clip_seconds=None, cache_dir=tmp_path, workers=0, progress=False))
    assert whole.lengths.tolist() == [len(y)]


def test_undecodable_and_non_finite_files_are_skipped_with_their_reason(tracks, tmp_path):
    ws = build(tracks, tmp_path / "cache")
    assert sorted(ws.skipped) == sorted(p for p in tracks if "corrupt" in p or "nan" in p)
    corrupt, nan = (next(p for p in tracks if name in p) for name in ("corrupt", "nan"))
    assert "non-finite" in ws.skipped[nan]
    assert ws.skipped[corrupt] and "non-finite" not in ws.skipped[corrupt]
    with pytest.warns(UserWarning, match="skipping") as record:  # a cache hit warns again, once a file
        build_waveforms(tracks, context=BuildContext(clip_seconds=2.0, cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert sorted(str(w.message).split(":")[0] for w in record) == sorted(f"skipping {p}" for p in (corrupt, nan))


def test_samples_beyond_full_scale_are_clipped():
    assert to_pcm16(np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0])).tolist() == [-32767, -32767, 0, 16384, 32767, 32767]


def test_the_second_call_hits_the_cache(tracks, tmp_path, monkeypatch):
    first = build(tracks, tmp_path / "cache")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(wf, "load_audio", no_decoding)
    second = build(tracks, tmp_path / "cache")
    assert second.paths == first.paths and second.skipped == first.skipped
    assert np.array_equal(second.audio, first.audio) and np.array_equal(second.offsets, first.offsets)


def test_the_audio_is_memory_mapped_read_only(tracks, tmp_path):
    ws = build(tracks, tmp_path / "cache")
    assert isinstance(ws.audio, np.memmap)  # pages come from the file, nothing is read whole
    assert os.path.dirname(ws.audio.filename).startswith(str(tmp_path / "cache" / "waveforms"))
    assert not ws.audio.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        ws.audio[0] = 1
    assert ws.track(0).dtype == np.float32 and ws.track(0).flags.writeable  # a float copy per track
    umask = os.umask(0o022)
    os.umask(umask)
    folder = Path(ws.audio.filename).parent
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # shared like the other caches, not private


def test_without_a_cache_dir_the_audio_is_in_memory_and_nothing_is_left(tracks, tmp_path, monkeypatch):
    monkeypatch.setattr(wf.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ws = build(tracks, None)
    assert not isinstance(ws.audio, np.memmap) and len(ws) == 4
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate_audio", "garble_index", "drop_index"])
def test_a_damaged_cache_is_rebuilt_not_loaded(tracks, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    first = np.array(build(tracks, cache).audio)  # a copy: the damage below changes the mapped file
    (folder,) = (cache / "waveforms").iterdir()
    if damage == "truncate_audio":
        with open(folder / wf.AUDIO_FILE, "r+b") as fh:
            fh.truncate(os.path.getsize(folder / wf.AUDIO_FILE) - 100)
    elif damage == "garble_index":
        (folder / wf.INDEX_FILE).write_bytes(b"PK\x03\x04 not a zip")
    else:
        (folder / wf.INDEX_FILE).unlink()
    calls = []
    real = wf.load_audio
    monkeypatch.setattr(wf, "load_audio", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = build(tracks, cache)
    assert len(calls) == len(tracks)  # every file decoded again
    assert np.array_equal(again.audio, first)
    assert [p.name for p in (cache / "waveforms").iterdir()] == [folder.name]  # replaced in place, no leftovers


def test_a_changed_file_is_a_new_key(tracks, tmp_path):
    cache = tmp_path / "cache"
    build(tracks, cache)
    os.utime(tracks[0], ns=(1, 1))
    build(tracks, cache)
    assert len(list((cache / "waveforms").iterdir())) == 2


def test_an_interrupted_build_leaves_nothing_that_loads(tracks, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real = wf.load_audio

    def interrupted(path, *a, **k):
        if path == tracks[3]:
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(wf, "load_audio", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_waveforms(tracks, context=BuildContext(clip_seconds=2.0, cache_dir=cache, workers=0, progress=False))
    assert list((cache / "waveforms").iterdir()) == []


def test_a_temporary_folder_of_a_dead_build_is_removed(tracks, tmp_path):
    cache = tmp_path / "cache"
    key = wf._cache_key(tracks, SR, 2.0, "first")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    parent = cache / "waveforms"
    parent.mkdir(parents=True)
    host = wf.socket.gethostname()
    abandoned = parent / f".{key}.{host}.{dead_pid}.abc123.tmp"
    alive = parent / f".{key}.{host}.{os.getpid()}.def456.tmp"
    other_host = parent / f".{key}.elsewhere.{dead_pid}.ghi789.tmp"
    for folder in (abandoned, alive, other_host):
        folder.mkdir()
    build(tracks, cache)
    assert sorted(p.name for p in parent.iterdir()) == sorted([key, alive.name, other_host.name])


def test_workers_give_the_same_set(tracks, tmp_path):
    inline = build(tracks, tmp_path / "a")
    pooled = build(tracks, tmp_path / "b", workers=2)
    assert pooled.paths == inline.paths and pooled.skipped == inline.skipped
    assert np.array_equal(pooled.audio, inline.audio)


def test_an_empty_result_and_bad_arguments(tmp_path, tracks):
    corrupt = [p for p in tracks if "corrupt" in p]
    ws = build(corrupt, tmp_path / "cache")
    assert len(ws) == 0 and ws.audio.shape == (0,) and ws.offsets.shape == (0,)
    with pytest.raises(ValueError, match="same path"):
        build_waveforms([tracks[0], tracks[0]], context=BuildContext(cache_dir=None))
    with pytest.raises(ValueError, match="clip position"):
        build_waveforms(tracks, context=BuildContext(clip="last", cache_dir=None))
    with pytest.raises(ValueError, match="seconds"):
        build_waveforms(tracks, context=BuildContext(clip_seconds=0, cache_dir=None))
