"""data=fma: the FMA indexer on a generated download with the real one's layout and faults."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.datasets.fma import FMA_HEADER, index_fma, make_fma_tree, read_fma_tracks
from genre_cls.data.splits import make_splits
from genre_cls.data.synth.trees import MANIFEST
from genre_cls.errors import DataRootError, UserError

FMA_GENRES = ("Electronic", "Folk", "Hip-Hop", "Rock")


@pytest.fixture(scope="module")
def fma_tree(tmp_path_factory):
    return make_fma_tree(tmp_path_factory.mktemp("fma") / "fma", tracks_per_genre=3, seconds=6.0,
                         genres=FMA_GENRES, sr=22050)


def write_tone(path, seconds, sr=22050, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 330 * t), sr, format=fmt)


def manifest(root):
    return json.loads((root / MANIFEST).read_text())


def test_fma_tree_has_the_real_tracks_csv_layout_and_readable_mp3s(fma_tree):
    with open(fma_tree / "fma_metadata" / "tracks.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(FMA_HEADER) == 52 and rows[2][0] == "track_id"
    assert rows[0][1:14] == ["album"] * 13 and rows[0][-1] == "track" and rows[1][-1] == "title"
    assert any("\n" in cell for row in rows[3:] for cell in row)  # quoted multi-line biographies
    assert len(read_fma_tracks(fma_tree / "fma_metadata" / "tracks.csv")) == len(rows) - 3
    info = sf.info(str(fma_tree / "fma_small" / "000" / "000002.mp3"))
    assert info.format == "MP3" and info.channels == 2 and abs(info.duration - 6.0) < 0.1

def test_fma_small_is_indexed_with_top_genres_official_split_and_artists(fma_tree):
    index = index_fma(fma_tree)
    expected = manifest(fma_tree)
    assert index.dataset == "fma" and index.layouts == ["fma_small"]
    assert index.classes == sorted(FMA_GENRES)
    assert {t.track_id: (t.label, t.split) for t in index.tracks} == {
        tid: (v["label"], v["split"]) for tid, v in expected["tracks"].items()
    }
    assert all(len(t.track_id) == 6 and t.track_id.isdigit() for t in index.tracks)
    assert all(t.audio.parent.name == t.track_id[:3] for t in index.tracks)
    assert len({t.artist for t in index.tracks}) == 3 * len(FMA_GENRES)
    # the real download's faults are found by looking, and the metadata decides the subset
    reasons = {p.rsplit("/", 1)[1][:6]: why for p, why in index.skipped.items()}
    broken = expected["broken"]
    assert set(reasons) == set(broken)
    for tid, what in broken.items():
        assert {"empty": "empty", "too short": "too short", "missing": "missing from fma_small"}[what] in reasons[tid]
    assert expected["other_subset"] not in {t.track_id for t in index.tracks}
    summary = index.summary()
    assert summary["subset"] == "small" and summary["without_genre_top"]["tracks"] == 0
    assert summary["tracks_per_class"] == {g: 3 for g in sorted(FMA_GENRES)}
    parts = make_splits([t.track_id for t in index.tracks], "official",
                        labels={t.track_id: t.label for t in index.tracks},
                        predefined={t.track_id: t.split for t in index.tracks})
    assert {p: len(v) for p, v in parts.items()} == {"train": 4, "val": 4, "test": 4}

def test_fma_medium_holds_the_small_tracks_and_large_leaves_out_tracks_without_top_genre(fma_tree, tmp_path):
    medium = tmp_path / "medium"
    shutil.copytree(fma_tree, medium)
    (medium / "fma_small").rename(medium / "fma_medium")
    index = index_fma(medium)
    small_ids = {t.track_id for t in index_fma(fma_tree).tracks}
    assert {t.track_id for t in index.tracks} == small_ids | {manifest(fma_tree)["other_subset"]}
    assert index.summary()["subset"] == "medium"

    large = make_fma_tree(tmp_path / "large", subset="large", tracks_per_genre=3, seconds=6.0,
                          genres=FMA_GENRES[:2], sr=22050)
    index = index_fma(large, check_files=False)
    assert manifest(large)["without_genre_top"] not in {t.track_id for t in index.tracks}
    assert index.summary()["without_genre_top"]["tracks"] == 1

def test_fma_mistakes_are_one_line_errors(fma_tree, tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    with pytest.raises(DataRootError, match="fma_metadata/tracks.csv"):
        index_fma(root)
    (root / "fma_metadata").mkdir()
    shutil.copy(fma_tree / "fma_metadata" / "tracks.csv", root / "fma_metadata" / "tracks.csv")
    with pytest.raises(DataRootError, match="no FMA audio folder"):
        index_fma(root)
    (root / "fma_small").mkdir()
    (root / "fma_large").mkdir()
    with pytest.raises(DataRootError, match="several FMA audio folders.*small, large"):
        index_fma(root)
    with pytest.raises(UserError, match="unknown FMA subset 'tiny'"):
        index_fma(root, subset="tiny")
    (root / "other.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataRootError, match="not FMA's tracks.csv: no set/subset column"):
        index_fma(root, metadata=root / "other.csv", subset="small")
    # the metadata can live elsewhere
    assert len(index_fma(fma_tree, metadata=fma_tree / "fma_metadata").tracks) == 12

@pytest.mark.parametrize("damage", ["latin-1", "binary", "bad id"])
def test_fma_damaged_tracks_csv_is_a_one_line_error(fma_tree, tmp_path, damage):
    text = (fma_tree / "fma_metadata" / "tracks.csv").read_text(encoding="utf-8")
    path = tmp_path / "tracks.csv"
    if damage == "latin-1":  # saved by a spreadsheet in the wrong encoding
        path.write_bytes(text.replace("Zürich", "Zürich").encode("latin-1", errors="replace"))
        match = "not FMA's tracks.csv or is damaged.*UnicodeDecodeError"
    elif damage == "binary":
        path.write_bytes(bytes(range(128, 256)) * 20)
        match = "not FMA's tracks.csv or is damaged"
    else:
        lines = text.split("\n")
        lines[5] = "abc" + lines[5][lines[5].index(","):]
        path.write_text("\n".join(lines), encoding="utf-8")
        match = r"line \d+: track id 'abc' is not a number"
    with pytest.raises(DataRootError, match=match):
        read_fma_tracks(path)
    with pytest.raises(DataRootError, match=match):
        index_fma(fma_tree, metadata=path)

def test_fma_audio_files_missing_from_a_truncated_tracks_csv_are_named_in_one_warning(fma_tree, tmp_path, caplog):
    text = (fma_tree / "fma_metadata" / "tracks.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines(keepends=True)))
    with caplog.at_level(logging.WARNING):
        index_fma(fma_tree, check_files=False)
    assert "not listed in" not in caplog.text  # the complete file: every audio file is listed
    caplog.clear()
    kept = rows[:3 + 4]  # a download cut short: the header and the first four tracks
    cut = tmp_path / "tracks.csv"
    with open(cut, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(kept)
    kept_ids = {int(r[0]) for r in kept[3:]}
    on_disk = {int(p.stem) for p in (fma_tree / "fma_small").glob("*/*.mp3")}
    with caplog.at_level(logging.WARNING):
        index_fma(fma_tree, metadata=cut, check_files=False)
    warned = [r.getMessage() for r in caplog.records if "not listed in" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith(f"{len(on_disk - kept_ids)} audio files under fma_small/ are not listed in {cut}")


def test_an_fma_file_linked_to_another_tracks_file_is_not_a_second_track(fma_tree, tmp_path, caplog):
    root = tmp_path / "fma"
    shutil.copytree(fma_tree, root, symlinks=True)
    index = index_fma(root)
    first, other = index.tracks[0], next(t for t in index.tracks[1:] if t.label != index.tracks[0].label)
    other.audio.unlink()
    other.audio.symlink_to(first.audio)  # the same audio under another id and genre
    with caplog.at_level(logging.WARNING):
        linked = index_fma(root)
    assert [t.track_id for t in linked.tracks] == [t.track_id for t in index.tracks if t.track_id != other.track_id]
    assert linked.duplicates == {str(other.audio): str(first.audio)}
    assert f"{other.audio} -> {first.audio}" in caplog.text


def test_a_damaged_tracks_csv_row_is_named_by_its_first_line_when_a_field_spans_two(fma_tree, tmp_path):
    rows = list(csv.reader((fma_tree / "fma_metadata" / "tracks.csv").read_text(encoding="utf-8").splitlines(keepends=True)))
    rows[3][-1] = "a title\non two lines"  # the first track's last field: a quoted field over two lines
    rows[5][0] = "abc"  # the third track's id
    rows[5][-1] = "and a field\nover two lines"  # the damaged row spans two lines itself
    path = tmp_path / "tracks.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    first = next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.startswith("abc,"))
    with pytest.raises(DataRootError, match=rf"tracks.csv line {first}: track id 'abc' is not a number"):
        read_fma_tracks(path)
