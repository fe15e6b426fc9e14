"""The transfer embedding cache (genre_cls/data/embeddingset.py): chunks, the frozen musicnn's
embeddings of them, one build per key, reused, rebuilt when stale, the same in workers."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from genre_cls.data import embeddingset as es_mod
from genre_cls.data.audio import load_audio
from genre_cls.data.context import BuildContext
from genre_cls.data.embeddingset import build_embeddings, chunk_starts, spread
from genre_cls.errors import UserError
from genre_cls.models.musicnn import EMBEDDING_SIZE, PATCH_SAMPLES, pooled_midend
from genre_cls.pretrained import load

SR = 22050


@pytest.fixture
def tracks(tmp_path):
    """Three short songs (7.5 s at 22,050 Hz, 2 s at 44.1 kHz stereo, 4 s), a corrupt wav and a NaN wav."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = []
    for i, (seconds, sr, channels) in enumerate([(7.5, SR, 1), (2.0, 44100, 2), (4.0, SR, 1)]):
        t = np.arange(int(seconds * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.05 * rng.standard_normal(len(t))
        path = folder / f"t{i}.wav"
        sf.write(path, np.repeat(y[:, None], channels, 1).astype(np.float32), sr, subtype="PCM_16")
        paths.append(str(path))
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200))
    nan = folder / "nan.wav"
    y = np.zeros(SR, dtype=np.float32)
    y[100] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    return paths[:1] + [str(corrupt)] + paths[1:] + [str(nan)]


def build(paths, cache, **kw):
    hop, most = kw.pop("hop", PATCH_SAMPLES), kw.pop("most", None)
    kw.setdefault("workers", 0)
    with pytest.warns(UserWarning, match="skipping"):
        return build_embeddings(paths, "msd", hop, most, BuildContext(cache_dir=cache, progress=False, **kw))


@pytest.mark.parametrize(
    "n, hop, expected",
    [
        (10, PATCH_SAMPLES, [0]),  # shorter than a chunk: one padded chunk
        (PATCH_SAMPLES, PATCH_SAMPLES, [0]),
        (2 * PATCH_SAMPLES + PATCH_SAMPLES // 2, PATCH_SAMPLES, [0, PATCH_SAMPLES, 2 * PATCH_SAMPLES]),  # a half-chunk tail kept
        (2 * PATCH_SAMPLES + PATCH_SAMPLES // 2 - 1, PATCH_SAMPLES, [0, PATCH_SAMPLES]),  # a shorter one dropped
        (480_000, PATCH_SAMPLES, [i * PATCH_SAMPLES for i in range(10)]),  # 30 s: 10 chunks, 3,840 samples left
        (480_000, 24_000, [i * 24_000 for i in range(19)]),  # a 1.5 s hop: 19 overlapping chunks
    ],
)
def test_chunk_starts(n, hop, expected):
    assert chunk_starts(n, PATCH_SAMPLES, hop).tolist() == expected


def test_spread_keeps_the_ends_and_spaces_the_rest_evenly():
    starts = np.arange(20) * 10
    assert spread(starts, 3).tolist() == [0, 100, 190] and spread(starts, None) is starts and len(spread(starts, 50)) == 20


def test_embeddings_are_the_frozen_musicnns_mid_end_pooled_per_chunk(tracks, tmp_path):
    es = build(tracks, tmp_path / "cache")
    good = [p for p in tracks if "corrupt" not in p and "nan" not in p]
    assert es.paths == good and set(es.skipped) == {tracks[1], tracks[4]}
    assert "non-finite samples" in es.skipped[tracks[4]] and "cannot be decoded" not in es.skipped[tracks[1]]
    # 7.5 s at 16 kHz = 2 whole chunks and a tail of 0.52 chunk; 2 s: one padded chunk; 4 s: 1 chunk, a 0.34 tail dropped.
    assert es.counts.tolist() == [3, 1, 1] and es.embeddings.shape == (5, EMBEDDING_SIZE) and es.embeddings.dtype == np.float32
    model = load("msd")
    y = load_audio(good[0], sr=16000)
    chunks = np.zeros((3, PATCH_SAMPLES), np.float32)
    chunks.reshape(-1)[: len(y)] = y[: 3 * PATCH_SAMPLES]
    layers = model.embeddings(model.frontend(torch.from_numpy(chunks)))
    direct = torch.cat([layers["mean_pool"], layers["max_pool"]], 1).detach().numpy()
    np.testing.assert_allclose(es.embeddings[:3], direct, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(es.embeddings[:3], pooled_midend(model, torch.from_numpy(chunks)).numpy(), rtol=1e-5, atol=1e-6)


def test_the_second_call_reads_the_cache(tracks, tmp_path, monkeypatch):
    first = build(tracks, tmp_path / "cache")
    monkeypatch.setattr(es_mod, "_embed_shard", lambda *a, **k: pytest.fail("computed again"))
    again = build(tracks, tmp_path / "cache")
    assert again.paths == first.paths and again.skipped == first.skipped
    assert np.array_equal(again.embeddings, first.embeddings) and np.array_equal(again.counts, first.counts)


@pytest.mark.parametrize("change", ["touch_a_file", "other_weights", "hop", "most", "clip"])
def test_what_changes_the_embeddings_is_a_new_key_and_a_rebuild(tracks, tmp_path, monkeypatch, change):
    cache = tmp_path / "cache"
    build(tracks, cache)
    calls = []
    real = es_mod._embed_shard
    monkeypatch.setattr(es_mod, "_embed_shard", lambda paths, *a, **k: calls.append(paths) or real(paths, *a, **k))
    options = {}
    if change == "touch_a_file":
        os.utime(tracks[0], ns=(1, 1))
    elif change == "other_weights":  # a reinstalled genre_cls with other converted weights
        monkeypatch.setattr(es_mod, "weights_sha256", lambda name: "0" * 64)
    elif change == "hop":
        options["hop"] = PATCH_SAMPLES // 2
    elif change == "most":
        options["most"] = 2
    else:
        options["clip_seconds"] = 3.0
    rebuilt = build(tracks, cache, **options)
    assert sum(map(len, calls)) == len(tracks)
    assert len(list((cache / "embeddings").iterdir())) == 2
    counts = {"hop": [4, 1, 1], "most": [2, 1, 1], "clip": [1, 1, 1]}.get(change, [3, 1, 1])
    assert rebuilt.counts.tolist() == counts


@pytest.mark.parametrize("damage", ["truncate", "garble", "foreign_key"])
def test_a_damaged_cache_is_rebuilt_not_loaded(tracks, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    first = build(tracks, cache)
    (path,) = (cache / "embeddings").iterdir()
    if damage == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
    elif damage == "garble":
        path.write_bytes(b"PK\x03\x04 not a zip")
    else:
        np.savez(path, _key=np.array("another key"), embeddings=np.zeros((1, 3), np.float32))
    calls = []
    real = es_mod._embed_shard
    monkeypatch.setattr(es_mod, "_embed_shard", lambda paths, *a, **k: calls.append(paths) or real(paths, *a, **k))
    again = build(tracks, cache)
    assert sum(map(len, calls)) == len(tracks)
    assert np.array_equal(again.embeddings, first.embeddings)
    assert [p.name for p in (cache / "embeddings").iterdir()] == [path.name]
    assert not (cache / "shards").exists() or list((cache / "shards").iterdir()) == []


def test_workers_give_the_same_embeddings(tracks, tmp_path):
    inline = build(tracks, tmp_path / "a")
    pooled = build(tracks, tmp_path / "b", workers=2)
    assert pooled.paths == inline.paths and pooled.skipped == inline.skipped
    np.testing.assert_allclose(pooled.embeddings, inline.embeddings, rtol=1e-5, atol=1e-6)


def test_without_a_cache_dir_nothing_is_written(tracks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    es = build(tracks, None)
    assert len(es) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["audio"]


def test_an_unknown_backbone_is_one_user_error(tracks):
    with pytest.raises(UserError, match="unknown embedding backbone 'gtzan': choose one of msd, mtt"):
        build_embeddings(tracks, "gtzan", context=BuildContext(cache_dir=None))
    with pytest.raises(UserError, match="unknown embedding backbone 'msd_vgg'"):
        es_mod.backbone("msd_vgg")
