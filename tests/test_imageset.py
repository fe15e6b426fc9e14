"""Images of Net1-Net4 from Kaggle PNGs or rendered from audio (data.images), and their cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import GenreDataModule
from genre_cls.data import imageset as images_mod
from genre_cls.data.audio import load_audio
from genre_cls.data.imageset import build_images
from genre_cls.data.melimage import decode_image
from genre_cls.data.datasets.gtzan import index_gtzan
from genre_cls.errors import DataRootError, UserError
from genre_cls.data.context import BuildContext


@pytest.fixture(scope="module")
def synth_tracks(synth_root):
    return index_gtzan(synth_root).tracks


@pytest.fixture
def mixed_root(synth_root, tmp_path):
    """The synthetic audio, with Kaggle PNGs for every genre but blues and rock (20 tracks lack one)."""
    root = tmp_path / "mixed"
    root.mkdir()
    os.symlink(synth_root / "genres_original", root / "genres_original")
    for genre_dir in (synth_root / "images_original").iterdir():
        if genre_dir.name not in ("blues", "rock"):
            (root / "images_original").mkdir(exist_ok=True)
            os.symlink(genre_dir, root / "images_original" / genre_dir.name)
    return root


def test_rendering_the_synthetic_audio_gives_its_png_pixels(synth_tracks, tmp_path):
    """The synthetic PNGs were drawn from the wavs by the same renderer, so rendering the audio
    again (in two worker processes) must give exactly the decoded PNGs."""
    tracks = synth_tracks[::17][:6]
    rendered = build_images([("render", t.audio) for t in tracks], 180, context=BuildContext(cache_dir=tmp_path, workers=2, progress=False))
    decoded = np.stack([decode_image(t.image, 180) for t in tracks])
    assert rendered.sources == ["render"] * 6 and rendered.ok == list(range(6))
    assert rendered.images.dtype == np.uint8 and rendered.images.shape == (6, 3, 180, 180)
    np.testing.assert_array_equal(rendered.images, decoded)


def test_rendered_training_image_equals_predicts_input(synth_tracks, tmp_path):
    from genre_cls.data.kinds import KINDS

    short = tmp_path / "short.wav"  # 12 s: predict pads it to one 30 s window
    t = np.arange(12 * 22050) / 22050
    sf.write(str(short), (0.3 * np.sin(2 * np.pi * 330 * t) * (t % 1 < 0.5)).astype(np.float32), 22050)
    paths = [synth_tracks[0].audio, short]
    made = build_images([("render", p) for p in paths], 64, context=BuildContext(cache_dir=None, workers=0, progress=False))
    for i, path in enumerate(paths):
        cut = KINDS["image"].cut(load_audio(path), {"image_size": 64})
        np.testing.assert_array_equal(made.images[i], cut.x[0].numpy())


def test_cache_is_hit_and_rebuilt_when_a_file_or_the_renderer_changes(synth_tracks, tmp_path, monkeypatch):
    audio = tmp_path / "a.wav"
    audio.write_bytes(synth_tracks[1].audio.read_bytes())
    items = [("png", synth_tracks[0].image), ("render", audio)]
    first = build_images(items, 32, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert first.counts() == {"from_png": 1, "rendered": 1}
    assert len(list((tmp_path / "cache" / "images").glob("*.npz"))) == 1

    calls = []
    real = images_mod._make_chunk
    monkeypatch.setattr(images_mod, "_make_chunk", lambda chunk, size: calls.append(len(chunk)) or real(chunk, size))
    hit = build_images(items, 32, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert calls == [] and hit.sources == ["png", "render"]
    np.testing.assert_array_equal(hit.images, first.images)

    os.utime(audio, ns=(1, 1))  # a replaced file: same path, another mtime
    build_images(items, 32, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert calls == [1, 1]
    monkeypatch.setattr(images_mod, "MEL_IMAGE_VERSION", "test-next")
    build_images(items, 32, context=BuildContext(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert calls == [1, 1, 1, 1]
    # The source of an image is part of the key: the same files read another way are rebuilt.
    assert images_mod._cache_key(items, 32) != images_mod._cache_key([("render", items[0][1]), items[1]], 32)
    # So is the part of the track that is rendered (data.clip).
    middle = {"clip": "middle", "clip_seconds": 30.0}
    assert images_mod._cache_key(items, 32, middle) not in (images_mod._cache_key(items, 32), images_mod._cache_key(items, 32, {**middle, "clip": "first"}))


def test_undecodable_audio_is_skipped_with_a_warning(tmp_path, synth_tracks):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.warns(UserWarning, match="bad.wav"):
        made = build_images([("render", bad), ("png", synth_tracks[0].image)], 32, context=BuildContext(cache_dir=tmp_path, workers=0, progress=False))
    assert made.ok == [1] and made.sources == ["png"] and list(made.skipped) == [str(bad)]
    with pytest.warns(UserWarning, match="bad.wav"):  # and again from the cache
        assert build_images([("render", bad), ("png", synth_tracks[0].image)], 32, context=BuildContext(cache_dir=tmp_path, workers=0, progress=False)).ok == [1]


def test_auto_uses_pngs_where_present_and_renders_the_rest(mixed_root, tmp_path):
    dm = GenreDataModule(root=str(mixed_root), input="image", image_size=32, cache_dir=str(tmp_path), progress=False, workers=0)
    dm.setup()
    images = dm.summary()["images"]
    assert images == {"mode": "auto", "from_png": 79, "rendered": 20}
    assert sum(len(d) for d in dm.datasets.values()) == 99


def test_kaggle_mode_names_how_many_tracks_lack_a_png(mixed_root, tmp_path):
    dm = GenreDataModule(root=str(mixed_root), input="image", images="kaggle", cache_dir=str(tmp_path), progress=False)
    with pytest.raises(DataRootError, match=r"data.images=kaggle but 20 of 99 tracks .* data.images=auto"):
        dm.setup()


def test_unknown_images_value_lists_the_choices():
    with pytest.raises(UserError, match="unknown data.images 'png': choose one of auto, kaggle, render"):
        GenreDataModule(images="png")


def test_kaggle_mode_on_an_audio_only_root_is_one_error_line(synth_root, tmp_path, cfg_factory, capsys):
    """What ``python -m genre_cls.train model=net3 data.images=kaggle data.root=<flat copy>`` runs."""
    from genre_cls.errors import user_errors
    from genre_cls.train import train

    flat = tmp_path / "flat"
    flat.mkdir()
    for genre_dir in (synth_root / "genres_original").iterdir():
        os.symlink(genre_dir, flat / genre_dir.name)
    cfg = cfg_factory(["model=net3", "data.images=kaggle"])
    cfg.data.root = str(flat)
    with pytest.raises(SystemExit) as exc, user_errors():
        train(cfg)
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: data.images=kaggle but 99 of 99 tracks under '{flat}' have no Kaggle PNG "
        "(images_original/<genre>/<genre>000NN.png): use data.images=auto to render the missing ones "
        "from their audio, or data.images=render for all"
    ]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_bad_images_value_through_hydra_instantiate_is_one_error_line(cfg_factory, capsys):
    """Hydra wraps the constructor's UserError in its own multi-line exception; the command
    still ends in the user's one line."""
    import hydra

    from genre_cls.errors import user_errors

    cfg = cfg_factory(["data.images=pngs"])
    with pytest.raises(SystemExit) as exc, user_errors():
        hydra.utils.instantiate(cfg.data)
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["error: unknown data.images 'pngs': choose one of auto, kaggle, render"]
