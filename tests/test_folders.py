"""data=folders: the folder-tree indexer, on its generated tree (labels and file names of every kind)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.audio import load_audio
from genre_cls.data.datasets.folders import FOLDER_DUPLICATE_RULE, FOLDER_LABELS, index_folders, make_folder_tree
from genre_cls.data.splits import make_splits, parse_segment_id, segment_id, track_of
from genre_cls.data.synth.trees import MANIFEST
from genre_cls.errors import DataRootError


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory):
    return make_folder_tree(tmp_path_factory.mktemp("folders") / "music", tracks_per_label=3, seconds=4.0)


def write_tone(path, seconds, sr=22050, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 330 * t), sr, format=fmt)


def manifest(root):
    return json.loads((root / MANIFEST).read_text())


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
    assert "decoded" in reasons["a/three.wav"]  # a WAV header: damaged audio, which the decoders name
    assert reasons["a/three.wav"].endswith(f"{root / 'a' / 'three.ogg'} is used instead")
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


def test_a_second_path_to_one_file_is_not_a_second_track_whatever_label_it_is_under(tmp_path, caplog):
    root = tmp_path / "music"
    for label in ("rock", "jazz", "pop"):
        for i in range(3):
            write_tone(root / label / f"{label} {i}.wav", 1.5)
    (root / "jazz" / "borrowed").symlink_to(root / "rock")  # a link to another label's folder
    (root / "pop" / "stolen.wav").symlink_to(root / "rock" / "rock 0.wav")  # and to another label's file
    (root / "pop" / "z copy.wav").hardlink_to(root / "pop" / "pop 1.wav")  # a hard link within a label
    with caplog.at_level(logging.WARNING):
        index = index_folders(root)
    assert sorted(t.track_id for t in index.tracks) == sorted(f"{label}/{label} {i}" for label in ("jazz", "pop", "rock")
                                                              for i in range(3))
    assert {t.label for t in index.tracks if t.track_id.startswith("rock/")} == {"rock"}
    assert index.duplicates == {
        **{str(root / "jazz" / "borrowed" / f"rock {i}.wav"): str(root / "rock" / f"rock {i}.wav") for i in range(3)},
        str(root / "pop" / "stolen.wav"): str(root / "rock" / "rock 0.wav"),
        str(root / "pop" / "z copy.wav"): str(root / "pop" / "pop 1.wav"),
    }
    (line,) = [r.getMessage() for r in caplog.records if "another path" in r.getMessage()]
    assert line.startswith("5 files reached through another path to a file already indexed are not read again")
    assert f"{root}/jazz/borrowed -> {root}/rock (3 files)" in line and f"{root}/pop/stolen.wav -> {root}/rock/rock 0.wav" in line
    assert "(a hard link)" in line


def test_an_unusable_copy_says_which_copy_is_used_instead(tmp_path):
    root = tmp_path / "c"
    (root / "a").mkdir(parents=True)
    (root / "a" / "song.wav").write_bytes(b"RIFF....WAVEnot audio")
    write_tone(root / "a" / "song.ogg", 3, fmt="OGG")
    (root / "a" / "alone.wav").write_bytes(b"RIFF....WAVEnot audio")
    write_tone(root / "b" / "x.wav", 3)
    index = index_folders(root)
    used = root / "a" / "song.ogg"
    assert index.skipped[str(root / "a" / "song.wav")].endswith(f"; {used} is used instead")
    assert "used instead" not in index.skipped[str(root / "a" / "alone.wav")]
