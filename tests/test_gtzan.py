import logging

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.datasets.gtzan import index_gtzan
from genre_cls.data.tracks import audio_problem
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


def test_real_sample_is_indexed(gtzan_sample):
    index = index_gtzan(gtzan_sample)
    assert len(index.with_audio()) == 10 and not index.skipped


@pytest.mark.parametrize("under", ["", "Data"])
def test_flat_layout_of_genre_folders_is_indexed(tmp_path, under):
    base = tmp_path / under if under else tmp_path
    write_tone(base / "blues" / "blues.00000.wav", seconds=12)
    write_tone(base / "rock" / "rock.00007.au", seconds=12, fmt="AU")
    (base / "rock" / "notes.txt").write_text("not a track")
    (base / "misc").mkdir()
    index = index_gtzan(tmp_path)
    assert index.layouts == ["flat"]
    assert [(t.track_id, t.audio.name) for t in index.tracks] == [("blues.00000", "blues.00000.wav"), ("rock.00007", "rock.00007.au")]
    assert index.duplicates == {} and index.summary()["duplicates_dropped"] == {}


def test_one_copy_of_a_duplicated_track_wins_by_the_documented_rule(tmp_path):
    kaggle = tmp_path / "genres_original/pop/pop.00001.wav"
    marsyas_au = tmp_path / "genres/pop/pop.00001.au"
    flat_wav = tmp_path / "pop/pop.00001.wav"
    flat_au = tmp_path / "pop/pop.00001.au"
    for path in (kaggle, flat_wav):
        write_tone(path, seconds=12)
    for path in (marsyas_au, flat_au):
        write_tone(path, seconds=12, fmt="AU")
    # pop.00002: the Kaggle copy is corrupt, so the next copy by the rule (flat .au) is used.
    (tmp_path / "genres_original/pop/pop.00002.wav").write_text("not audio")
    write_tone(tmp_path / "pop/pop.00002.au", seconds=12, fmt="AU")
    # Under Data/ the same flat track again: the root's copy comes first.
    write_tone(tmp_path / "Data/pop/pop.00002.wav", seconds=12)

    index = index_gtzan(tmp_path)
    assert index.layouts == ["flat", "kaggle", "marsyas"]
    used = {t.track_id: t.audio for t in index.tracks}
    assert used == {"pop.00001": kaggle, "pop.00002": tmp_path / "pop/pop.00002.au"}
    assert index.duplicates == {
        str(marsyas_au): str(kaggle),
        str(flat_wav): str(kaggle),
        str(flat_au): str(kaggle),
        str(tmp_path / "Data/pop/pop.00002.wav"): str(tmp_path / "pop/pop.00002.au"),
    }
    assert list(index.skipped) == [str(tmp_path / "genres_original/pop/pop.00002.wav")]
    summary = index.summary()
    assert summary["duplicates_dropped"] == index.duplicates and "first usable" in summary["duplicate_rule"]


def test_layout_errors_name_the_flat_layout(tmp_path):
    with pytest.raises(DataRootError, match="flat: <genre>/<genre>.000NN.wav"):
        index_gtzan(tmp_path)
    with pytest.raises(DataRootError, match="flat"):
        index_gtzan(tmp_path / "nope")


@pytest.mark.parametrize("damage", ["nan", "inf", "huge", "short"])
def test_a_first_copy_unusable_for_any_reason_gives_way_to_the_next(tmp_path, damage):
    """The Kaggle copy cannot be used: its samples are non-finite or absurd (which only decoding
    shows: the header is fine) or it is too short. The flat copy is used, and the summary says so."""
    sr = 22050
    kaggle = tmp_path / "genres_original/pop/pop.00003.wav"
    flat = tmp_path / "pop/pop.00003.wav"
    write_tone(flat, seconds=12)
    y = (0.1 * np.sin(np.arange(12 * sr) / 10)).astype(np.float32)
    if damage == "nan":
        y[1000] = np.nan
    elif damage == "inf":
        y[5] = np.inf
    elif damage == "huge":
        y[5] = 1e30
    kaggle.parent.mkdir(parents=True)
    sf.write(str(kaggle), y, sr, subtype="FLOAT")
    if damage == "short":
        sf.write(str(kaggle), y[:sr], sr, subtype="FLOAT")
    else:
        assert audio_problem(kaggle, 10.0) is None  # the header check alone would use it

    index = index_gtzan(tmp_path)
    assert [(t.track_id, t.audio) for t in index.tracks] == [("pop.00003", flat)]
    assert index.duplicates == {}  # the flat copy is used, not dropped
    assert list(index.skipped) == [str(kaggle)]
    assert index.skipped[str(kaggle)].endswith(f"; {flat} is used instead")
    assert index.summary()["duplicates_dropped"] == {}


def test_a_single_copy_is_not_decoded_by_the_index(tmp_path, monkeypatch):
    import genre_cls.data.tracks as index_module

    write_tone(tmp_path / "pop/pop.00000.wav", seconds=12)
    write_tone(tmp_path / "genres_original/pop/pop.00001.wav", seconds=12)
    write_tone(tmp_path / "pop/pop.00001.wav", seconds=12)
    decoded = []
    real = index_module.load_audio
    monkeypatch.setattr(index_module, "load_audio", lambda p: decoded.append(p) or real(p))
    index = index_gtzan(tmp_path)
    assert decoded == [tmp_path / "genres_original/pop/pop.00001.wav"]  # only the copy with a copy behind it
    assert index.duplicates == {str(tmp_path / "pop/pop.00001.wav"): str(tmp_path / "genres_original/pop/pop.00001.wav")}


def test_track_index_is_dataset_neutral_and_keeps_the_gtzan_names(tmp_path):
    from genre_cls import GENRES
    from genre_cls.data.tracks import Track, TrackIndex

    write_tone(tmp_path / "rock" / "rock.00003.wav")
    index = index_gtzan(tmp_path)
    assert index.dataset == "gtzan" and index.classes == list(GENRES)
    (track,) = index.tracks
    assert track.label == "rock" and track.split is None and track.artist is None
    summary = index.summary()
    assert summary["dataset"] == "gtzan" and summary["classes"] == list(GENRES)
    assert summary["tracks_per_class"] == summary["tracks_per_genre"] == {g: int(g == "rock") for g in GENRES}
    custom = TrackIndex(tmp_path, ["x"], [Track("a/1", "b"), Track("a/2", "a", split="test", artist="7")],
                        classes=["a", "b"], dataset="folders", extra={"note": 1})
    summary = custom.summary()
    assert summary["tracks_per_class"] == {"a": 1, "b": 1} and "tracks_per_genre" not in summary
    assert summary["note"] == 1 and summary["dataset"] == "folders" and "duplicate_rule" not in summary


def test_a_gtzan_file_linked_under_another_track_id_is_not_a_second_track(tmp_path):
    write_tone(tmp_path / "blues/blues.00001.wav", seconds=12)
    write_tone(tmp_path / "blues/blues.00002.wav", seconds=12)
    (tmp_path / "country").mkdir()
    (tmp_path / "country/country.00001.wav").symlink_to(tmp_path / "blues/blues.00001.wav")
    index = index_gtzan(tmp_path)
    assert [t.track_id for t in index.tracks] == ["blues.00001", "blues.00002"]
    assert index.duplicates == {str(tmp_path / "country/country.00001.wav"): str(tmp_path / "blues/blues.00001.wav")}
