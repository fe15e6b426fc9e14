import numpy as np
import pytest
import torch

from genre_cls.data import GenreDataModule


@pytest.fixture(scope="module")
def feature_dm(synth_root, cache_dir):
    dm = GenreDataModule(root=str(synth_root), input="features", cache_dir=str(cache_dir), progress=False, workers=0)
    dm.setup()
    return dm


def test_image_batches_are_uint8_chw_with_track_indices(synth_root, cache_dir):
    dm = GenreDataModule(root=str(synth_root), input="image", batch_size=4, cache_dir=str(cache_dir), progress=False)
    dm.setup()
    x, y, t = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 180, 180)
    assert y.dtype == torch.long and t.dtype == torch.long
    assert all(dm.track_ids[i].split(".")[0] == dm.classes[c] for i, c in zip(t.tolist(), y.tolist()))
    assert sum(dm.summary()["samples"].values()) == 99


def test_track_split_keeps_all_segments_of_a_track_on_one_side(feature_dm):
    tracks = {p: set(feature_dm.datasets[p].tensors[2].tolist()) for p in ("train", "val", "test")}
    assert not (tracks["train"] & tracks["test"] or tracks["train"] & tracks["val"] or tracks["val"] & tracks["test"])
    counts = torch.bincount(feature_dm.datasets["test"].tensors[2])
    assert set(counts[counts > 0].tolist()) == {10}
    x = feature_dm.datasets["train"].tensors[0]
    assert x.shape[1:] == (16, 33) and x.dtype == torch.float32


def test_standardisation_comes_from_the_training_split_only(feature_dm):
    train_x = feature_dm.datasets["train"].tensors[0].reshape(-1, 33).double()
    np.testing.assert_allclose(feature_dm.feature_mean, train_x.mean(0).numpy(), rtol=1e-5, atol=1e-4)
    test_x = feature_dm.datasets["test"].tensors[0].reshape(-1, 33).double()
    assert not np.allclose(feature_dm.feature_mean, test_x.mean(0).numpy(), rtol=1e-3)


def test_segment_split_is_the_papers_leaky_setting(synth_root, cache_dir):
    dm = GenreDataModule(root=str(synth_root), input="features", split="segment", cache_dir=str(cache_dir), progress=False, workers=0)
    dm.setup()
    train_tracks = set(dm.datasets["train"].tensors[2].tolist())
    test_tracks = set(dm.datasets["test"].tensors[2].tolist())
    assert train_tracks & test_tracks
    assert sum(len(d) for d in dm.datasets.values()) == 99 * 10
    from genre_cls.train import splits_record

    record = splits_record(dm, 0)
    assert record["split"] == "segment" and "#" not in record["test"][0] and "#" in record["test_segments"][0]
    assert set(record["test"]) == {u.split("#")[0] for u in record["test_segments"]}


def test_image_models_on_an_audio_only_root_get_rendered_images(tmp_path, cache_dir):
    import soundfile as sf

    folder = tmp_path / "genres" / "blues"
    folder.mkdir(parents=True)
    t = np.arange(22050 * 12) / 22050
    for i in range(3):
        sf.write(str(folder / f"blues.{i:05d}.au"), 0.2 * np.sin(2 * np.pi * 200 * (i + 1) * t), 22050, format="AU")
    dm = GenreDataModule(root=str(tmp_path), input="image", image_size=32, cache_dir=str(cache_dir), progress=False, workers=0)
    dm.setup()
    assert dm.summary()["images"] == {"mode": "auto", "from_png": 0, "rendered": 3}
    x = torch.cat([d.tensors[0] for d in dm.datasets.values()])
    assert x.shape == (3, 3, 32, 32) and len({bytes(img.numpy()) for img in x}) == 3


def test_rendering_needs_audio(synth_root, tmp_path, cache_dir):
    from genre_cls.errors import DataRootError

    (tmp_path / "Data").mkdir()
    (tmp_path / "Data" / "images_original").symlink_to(synth_root / "images_original")
    dm = GenreDataModule(root=str(tmp_path), input="image", images="render", cache_dir=str(cache_dir), progress=False)
    with pytest.raises(DataRootError, match="data.images=render needs audio files.*use data.images=auto or kaggle"):
        dm.setup()


def test_image_and_feature_models_share_test_tracks(synth_root, cache_dir, feature_dm):
    img = GenreDataModule(root=str(synth_root), input="image", cache_dir=str(cache_dir), progress=False)
    img.setup()
    assert img.splits["test"] == feature_dm.splits["test"]


def test_added_training_samples_never_reach_validation_or_test(synth_root, cache_dir):
    dm = GenreDataModule(root=str(synth_root), input="features", cache_dir=str(cache_dir), progress=False, workers=0)
    dm.setup()
    sizes = {p: len(d) for p, d in dm.datasets.items()}
    dm.add_train_samples(torch.zeros(7, 16, 33), torch.arange(7))
    assert len(dm.datasets["train"]) == sizes["train"] + 7
    assert (dm.datasets["train"].tensors[2] == -1).sum() == 7
    assert {p: len(dm.datasets[p]) for p in ("val", "test")} == {"val": sizes["val"], "test": sizes["test"]}


def test_synthetic_default_is_generated_once_into_the_cache(tmp_path):
    dm = GenreDataModule(root=None, input="image", cache_dir=str(tmp_path), synthetic={"tracks_per_genre": 3, "seed": 0}, progress=False)
    dm.prepare_data()
    marker = dm.data_root / ".complete"
    assert marker.is_file()
    stamp = marker.stat().st_mtime_ns
    GenreDataModule(root=None, input="image", cache_dir=str(tmp_path), synthetic={"tracks_per_genre": 3, "seed": 0}, progress=False).prepare_data()
    assert marker.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("synthetic/*.tmp*"))


def test_memory_and_torch_loaders_serve_the_same_samples(synth_root, cache_dir):
    def ids(loader_kind: str, part: str) -> list[int]:
        dm = GenreDataModule(root=str(synth_root), input="image", batch_size=8, cache_dir=str(cache_dir),
                             progress=False, loader=loader_kind)
        dm.setup()
        loader = dm.train_dataloader() if part == "train" else dm.test_dataloader()
        return sorted(t for _, _, track in loader for t in track.tolist())

    assert ids("memory", "train") == ids("torch", "train")
    assert ids("memory", "test") == ids("torch", "test")


def test_a_track_skipped_while_decoding_is_in_no_split_and_not_counted(synth_root, tmp_path, caplog):
    """A wav whose header is fine but whose samples are not audio (here 1e6 x a clip) passes the
    index and is skipped when decoded: splits.json and data_summary.json must not list it."""
    import logging
    import shutil

    import soundfile as sf

    root = tmp_path / "root"
    shutil.copytree(synth_root / "genres_original", root / "genres_original")
    bad = root / "genres_original" / "country" / "country.00000.wav"
    y, sr = sf.read(bad, dtype="float32")
    sf.write(bad, y * 1e6, sr, subtype="FLOAT")
    dm = GenreDataModule(root=str(root), input="features", cache_dir=str(tmp_path / "cache"), progress=False, workers=0)
    with caplog.at_level(logging.WARNING, logger="genre_cls"):
        dm.setup("fit")
    assert "country.00000" not in dm.track_ids
    assert all("country.00000" not in units for units in dm.splits.values())
    summary = dm.summary()
    assert str(bad) in summary["skipped"]
    assert summary["tracks"] == len(dm.track_ids) == summary["tracks_indexed"] - 1
    assert summary["tracks_per_genre"]["country"] == 9
    assert any(str(bad) in r.getMessage() and "too large" in r.getMessage() for r in caplog.records)


def _manifest(root, rows):
    """A data=csv manifest of 2 s tones: ``rows`` of (name, label, split)."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    for i, (name, _, _) in enumerate(rows):
        t = np.arange(2 * 22050) / 22050
        sf.write(root / name, (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 22050)
    (root / "m.csv").write_text("".join(f"{n},{label},{part}\n" for n, label, part in rows))
    return root / "m.csv"


def test_a_class_the_training_split_lacks_and_padded_training_audio_are_said_and_recorded(tmp_path, caplog):
    rows = [(f"{label}{i}.wav", label, part) for label in ("a", "b") for i, part in enumerate(("train", "train", "val", "test"))]
    rows += [("z0.wav", "z", "test"), ("z1.wav", "z", "val")]  # an official split whose training part lacks z
    manifest = _manifest(tmp_path / "c", rows)
    dm = GenreDataModule(root=str(manifest), dataset="csv", split="official", input="waveform", min_seconds=1.0,
                         cache_dir=str(tmp_path / "cache"), progress=False, workers=0, input_options={"chunk_seconds": 3.0})
    with caplog.at_level("WARNING"):
        dm.setup()
    (untrained,) = [r.getMessage() for r in caplog.records if "training split" in r.getMessage()]
    assert untrained.startswith("'z' has no track in the training split (data.split=official puts 'z' in test and val): "
                                "the model never learns it")
    (padded,) = [r.getMessage() for r in caplog.records if "zero-padded" in r.getMessage()]
    assert padded.startswith("4 of 4 training tracks are shorter than the 3 s the model reads at once (the shortest 2.0 s)")
    assert "33% of the training audio is silence" in padded and "model.input.chunk_seconds" in padded
    summary = dm.summary()
    assert summary["classes_not_trained"] == ["z"]
    assert summary["padding"] == {"reads_seconds": 3.0, "tracks_shorter": 4, "of": 4, "shortest_seconds": 2.0,
                                  "padding_share": pytest.approx(1 / 3, abs=1e-3)}


def test_ray_not_used_because_everything_was_cached_is_said(tmp_path, caplog):
    rows = [(f"{label}{i}.wav", label, part) for label in ("a", "b") for i, part in enumerate(("train", "val", "test"))]
    manifest = _manifest(tmp_path / "c", rows)
    common = dict(root=str(manifest), dataset="csv", split="official", input="waveform", min_seconds=1.0,
                  cache_dir=str(tmp_path / "cache"), progress=False, workers=0, input_options={"chunk_seconds": 1.0})
    GenreDataModule(**common).setup()  # fills the cache
    with caplog.at_level("WARNING"):
        GenreDataModule(**common, engine="ray", ray_address="10.255.255.1:6379").setup()
    (line,) = [r.getMessage() for r in caplog.records if "data.engine=ray" in r.getMessage()]
    assert line == (f"data.engine=ray: everything this run reads was already in the cache ({tmp_path / 'cache'}), so Ray "
                    "was not used and the cluster at data.ray_address=10.255.255.1:6379 was not contacted")
