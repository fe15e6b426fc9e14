import logging

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.index import index_gtzan
from genre_cls.errors import DataRootError


def write_tone(path, seconds=30.0, sr=22050, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 220 * t), sr, format=fmt)


def test_kaggle_layout_is_indexed_and_the_corrupt_wav_is_detected(synth_root, caplog):
    with caplog.at_level(logging.WARNING):
        index = index_gtzan(synth_root)
    assert index.layouts == ["kaggle"]
    # 10 genres x 10 tracks; one jazz wav is corrupt and has no image, so that track is gone.
    assert len(index.tracks) == 99
    assert len(index.skipped) == 1
    (bad_path, why), = index.skipped.items()
    assert bad_path.endswith(".wav") and "decoded" in why
    assert any(bad_path in r.getMessage() for r in caplog.records)
    assert all(t.audio is not None and t.image is not None for t in index.tracks)
    assert index.summary()["tracks_per_genre"]["jazz"] == 9


def test_marsyas_layout_under_data_folder(tmp_path):
    for g, i in [("blues", 0), ("rock", 7)]:
        write_tone(tmp_path / "Data" / "genres" / g / f"{g}.{i:05d}.au", fmt="AU")
    index = index_gtzan(tmp_path)
    assert index.layouts == ["marsyas"]
    assert [t.track_id for t in index.tracks] == ["blues.00000", "rock.00007"]
    assert index.tracks[0].audio.suffix == ".au" and index.tracks[0].image is None


def test_corrupt_short_and_unreadable_files_are_found_by_looking(tmp_path):
    root = tmp_path / "gtzan"
    write_tone(root / "genres_original/pop/pop.00000.wav")
    write_tone(root / "genres_original/pop/pop.00001.wav", seconds=1.0)  # far too short
    (root / "genres_original/pop/pop.00002.wav").write_text("this is not audio")
    (root / "images_original/pop").mkdir(parents=True)
    (root / "images_original/pop/pop00000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    index = index_gtzan(root)
    reasons = {k.rsplit("/", 1)[-1]: v for k, v in index.skipped.items()}
    assert set(reasons) == {"pop.00001.wav", "pop.00002.wav", "pop00000.png"}
    assert "too short" in reasons["pop.00001.wav"]
    assert [t.track_id for t in index.tracks] == ["pop.00000"]
    assert index.tracks[0].image is None


def test_missing_root_and_root_without_layout_are_one_clear_error(tmp_path):
    with pytest.raises(DataRootError, match="does not exist"):
        index_gtzan(tmp_path / "nope")
    (tmp_path / "music").mkdir()
    with pytest.raises(DataRootError, match="genres_original.*genres/"):
        index_gtzan(tmp_path)


def test_real_sample_if_present():
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "shared" / "gtzan-sample"
    if not sample.is_dir():
        pytest.skip("no ../shared/gtzan-sample")
    index = index_gtzan(sample)
    assert len(index.with_audio()) == 10 and not index.skipped
