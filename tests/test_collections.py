"""Collections beyond GTZAN: the folder-tree and FMA indexers, on the generated trees."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.audio import load_audio
from genre_cls.data.collections import (
    DATASETS, FOLDER_DUPLICATE_RULE, index_dataset, index_fma, index_folders, read_fma_tracks,
)
from genre_cls.data.splits import make_splits, parse_segment_id, segment_id, track_of
from genre_cls.data.synth_collections import FMA_HEADER, FOLDER_LABELS, MANIFEST, make_fma_tree, make_folder_tree
from genre_cls.errors import DataRootError, UserError

FMA_GENRES = ("Electronic", "Folk", "Hip-Hop", "Rock")


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory):
    return make_folder_tree(tmp_path_factory.mktemp("folders") / "music", tracks_per_label=3, seconds=4.0)


@pytest.fixture(scope="module")
def fma_tree(tmp_path_factory):
    return make_fma_tree(tmp_path_factory.mktemp("fma") / "fma", tracks_per_genre=3, seconds=6.0,
                         genres=FMA_GENRES, sr=22050)


def manifest(root):
    return json.loads((root / MANIFEST).read_text())


def write_tone(path, seconds, sr=22050, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 330 * t), sr, format=fmt)


# -- folders -------------------------------------------------------------------------------------
def test_folder_tree_gives_every_track_its_label_and_path_id(folder_tree):
    index = index_folders(folder_tree)
    expected = manifest(folder_tree)["tracks"]
    assert {t.track_id: t.label for t in index.tracks} == {tid: v["label"] for tid, v in expected.items()}
    assert [t.track_id for t in index.tracks] == sorted(expected)
    assert index.classes == sorted(FOLDER_LABELS) and len(index.classes) == 7
    for t in index.tracks:  # the id is the file's path under the root without its extension
        assert t.audio == folder_tree / expected[t.track_id]["file"]
        assert t.split is None and t.artist is None and t.image is None
    ids = [t.track_id for t in index.tracks]
    # odd names survive: '#', commas, dots, non-ASCII, nesting; hidden and non-audio files do not count
    assert any(re.fullmatch(r"[^/]+/Symphony #\d+", i) for i in ids)
    assert any("," in i and "#" in i and "é" in i for i in ids) and any("曲" in i for i in ids)
    assert any(i.count("/") >= 3 for i in ids)
    assert not [i for i in ids if "deleted" in i or "unsorted" in i or "cover" in i or "DS_Store" in i]
    assert index.skipped == {} and index.duplicates == {}
    summary = index.summary()
    assert summary["dataset"] == "folders" and summary["classes"] == index.classes
    assert summary["tracks_per_class"] == {c: 3 for c in index.classes}
    assert "tracks_per_genre" not in summary and summary["duplicate_rule"] == FOLDER_DUPLICATE_RULE
    assert json.loads(json.dumps(summary, ensure_ascii=False)) == summary


def test_every_format_of_the_folder_tree_decodes_at_its_length(folder_tree):
    expected = manifest(folder_tree)["tracks"]
    by_ext = {}
    for tid, v in expected.items():
        by_ext.setdefault(v["file"].rsplit(".", 1)[1].lower(), (tid, v))
    assert set(by_ext) == {"wav", "flac", "ogg", "mp3"}
    for ext, (tid, v) in by_ext.items():
        y = load_audio(folder_tree / v["file"])
        assert abs(len(y) / 22050 - v["seconds"]) < 0.1, (ext, len(y), v["seconds"])
    lengths = sorted(v["seconds"] for v in expected.values())
    assert lengths[0] == 2.0 and lengths[-1] == 32.0  # a short track and one longer than a 30 s clip


def test_broken_files_are_skipped_with_their_reason_and_copies_compete_by_extension(tmp_path):
    root = tmp_path / "c"
    write_tone(root / "a" / "one.wav", 3)
    write_tone(root / "a" / "two.wav", 3)
    write_tone(root / "a" / "two.flac", 3)  # a copy of "a/two": .wav wins
    (root / "a" / "three.wav").write_bytes(b"RIFF....WAVEnot audio")
    write_tone(root / "a" / "three.ogg", 3, fmt="OGG")  # the corrupt .wav loses to its usable copy
    (root / "b").mkdir()
    (root / "b" / "empty.mp3").write_bytes(b"")
    write_tone(root / "b" / "short.flac", 0.5)
    write_tone(root / "b" / "ok.flac", 3)
    index = index_folders(root)
    assert [t.track_id for t in index.tracks] == ["a/one", "a/three", "a/two", "b/ok"]
    assert index.tracks[1].audio.name == "three.ogg" and index.tracks[2].audio.name == "two.wav"
    reasons = {k.split("/c/", 1)[1]: v for k, v in index.skipped.items()}
    assert set(reasons) == {"a/three.wav", "b/empty.mp3", "b/short.flac"}
    assert "empty" in reasons["b/empty.mp3"] and "too short" in reasons["b/short.flac"]
    assert "decoded" in reasons["a/three.wav"]
    assert index.duplicates == {str(root / "a" / "two.flac"): str(root / "a" / "two.wav")}


def test_a_class_with_fewer_than_three_tracks_warns_and_only_trains(tmp_path, caplog):
    root = tmp_path / "c"
    for label, n in (("big", 6), ("other", 6), ("lonely", 1)):
        for i in range(n):
            write_tone(root / label / f"{i}.wav", 1.5)
    with caplog.at_level(logging.WARNING):
        index = index_folders(root)
    (msg,) = [r.getMessage() for r in caplog.records if "at least 3" in r.getMessage()]
    assert "'lonely' has 1 usable track:" in msg and "only trains" in msg
    labels = {t.track_id: t.label for t in index.tracks}
    parts = make_splits(list(labels), "track", seed=0, labels=labels)
    assert "lonely/0" in parts["train"]  # what the warning says happens


@pytest.mark.parametrize("make, match", [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "no label folders"),
    (lambda r: ((r / "rock").mkdir(parents=True), (r / "rock" / "notes.txt").write_text("x")), "no audio files"),
    (lambda r: ((r / "rock").mkdir(parents=True), (r / "rock" / "a.wav").write_bytes(b"junk")), "none of the 1 audio"),
])
def test_a_root_without_usable_labelled_audio_is_one_line_naming_the_layout(tmp_path, make, match):
    root = tmp_path / "music"
    make(root)
    with pytest.raises(DataRootError, match=match) as exc:
        index_folders(root)
    assert "\n" not in str(exc.value) and "<root>/<label>/**/<audio file>" in str(exc.value)


def test_index_dataset_dispatches_by_name_and_rejects_unknown_names_and_options(folder_tree, tmp_path):
    assert set(DATASETS) == {"gtzan", "folders", "fma"}
    assert index_dataset("folders", folder_tree).dataset == "folders"
    write_tone(tmp_path / "gtzan" / "blues" / "blues.00000.wav", 12)
    gtzan = index_dataset("gtzan", tmp_path / "gtzan", min_seconds=10.0)
    assert gtzan.dataset == "gtzan" and [t.track_id for t in gtzan.tracks] == ["blues.00000"]
    with pytest.raises(UserError, match="unknown dataset 'fmaa': choose one of gtzan, folders, fma"):
        index_dataset("fmaa", folder_tree)
    with pytest.raises(UserError, match="takes no option 'subset'"):
        index_dataset("folders", folder_tree, subset="small")


def test_segment_ids_of_track_ids_with_hashes_round_trip(folder_tree):
    ids = [t.track_id for t in index_folders(folder_tree).tracks]
    hashed = [i for i in ids if "#" in i]
    assert len(hashed) >= 3
    for tid in hashed:
        assert parse_segment_id(segment_id(tid, 7)) == (tid, 7)
        assert track_of(segment_id(tid, 7)) == tid
        assert track_of(tid, set(ids)) == tid  # "Symphony #2" is a track, not segment 2 of "Symphony "
    labels = {t.track_id: t.label for t in index_folders(folder_tree).tracks}
    parts = make_splits(ids, "segment", seed=0, n_segments=2, labels=labels)
    assert sorted({track_of(u) for p in parts.values() for u in p}) == sorted(ids)


# -- FMA -----------------------------------------------------------------------------------------
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


def test_linked_album_folders_are_read_and_link_loops_are_not_followed(tmp_path, caplog):
    def song(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.full(22050 * 2, 0.1, dtype="float32"), 22050)

    root = tmp_path / "music"
    for label in ("a", "b"):
        song(root / label / "one.wav")
    song(tmp_path / "elsewhere" / "album" / "linked song.wav")
    (root / "a" / "album").symlink_to(tmp_path / "elsewhere" / "album")  # an album kept elsewhere
    (root / "a" / "self").symlink_to(root / "a")  # loops into its own label
    (root / "b" / "up").symlink_to(root)  # loops through every label
    (root / "b" / "deep").mkdir()
    (root / "b" / "deep" / "again").symlink_to(root / "b" / "deep")
    with caplog.at_level(logging.WARNING):
        index = index_folders(root)
    assert [(t.track_id, t.label) for t in index.tracks] == [
        ("a/album/linked song", "a"), ("a/one", "a"), ("b/one", "b"),
    ]
    assert sorted(re.findall(r"not following \S+/(\w+/\w+)", caplog.text)) == ["a/self", "b/up", "deep/again"]


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
