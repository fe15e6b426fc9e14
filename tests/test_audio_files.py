"""data/audio_files.py: which files a user's inputs name, folders walked, what was left out counted."""

from __future__ import annotations

import pytest

from genre_cls.data.audio_files import find_audio_files
from genre_cls.data.synth.library_tree import make_library_tree
from genre_cls.errors import UserError


def _touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path):
    """Nested folders of (fake) audio files and everything else a library holds."""
    root = tmp_path / "Music"
    for rel in ("b/2.mp3", "b/1.WAV", "a/x/3.flac", "a/10.ogg", "a/9.au", "c d/Song, live (1).mp3"):
        _touch(root / rel)
    for rel in ("a/cover.jpg", "b/notes.txt", "playlist.m3u"):
        _touch(root / rel)
    for rel in (".hidden.mp3", "a/.DS_Store", ".trash/old.wav"):
        _touch(root / rel)
    (root / "link to a").symlink_to(root / "a", target_is_directory=True)  # a folder already walked
    (root / "a" / "x" / "up").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (root / "b" / "same.mp3").symlink_to(root / "b" / "2.mp3")  # one file by two names
    return root


def test_a_folder_is_walked_depth_first_in_name_order_each_file_once(tree):
    found = find_audio_files([tree])
    names = [str(p.relative_to(tree)) for p in found.files]
    assert names == ["a/10.ogg", "a/9.au", "a/x/3.flac", "b/1.WAV", "b/2.mp3", "c d/Song, live (1).mp3"]
    # 3 hidden names (.hidden.mp3, .DS_Store, .trash), 3 files that are not audio, the link to a
    # folder already read and the loop, the second name of one file.
    assert dict(found.skipped) == {"hidden": 3, "not_audio": 3, "link_loop": 2, "duplicate": 1}
    assert found.folders == 5  # Music, a, a/x, b, c d
    assert found.summary() == ("6 audio files in 5 folders (skipped: 1 reached twice, 3 hidden, "
                               "2 links to a folder already read, 3 not audio)")


def test_files_named_directly_are_kept_whatever_they_are(tree, tmp_path):
    notes = tree / "b" / "notes.txt"
    found = find_audio_files([notes, tmp_path / "missing.mp3", tree / "b" / "2.mp3", tree / "b" / "same.mp3"])
    assert found.files == [notes, tmp_path / "missing.mp3", tree / "b" / "2.mp3"]
    assert dict(found.skipped) == {"duplicate": 1} and found.folders == 0


def test_files_and_folders_mixed_keep_their_order_and_never_repeat(tree):
    first = tree / "b" / "2.mp3"
    found = find_audio_files([first, tree / "b"])
    assert found.files == [first, tree / "b" / "1.WAV"]
    assert found.skipped["duplicate"] == 2  # 2.mp3 again in b/, and its second name


def test_a_folder_without_audio_is_one_error_naming_what_it_holds(tmp_path):
    _touch(tmp_path / "docs" / "a.txt")
    _touch(tmp_path / "docs" / ".x.mp3")
    with pytest.raises(UserError, match=r"no audio files under .*docs \(found 1 hidden, 1 not audio\)"):
        find_audio_files([tmp_path / "docs"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no audio files under .*empty \(found nothing\)"):
        find_audio_files([tmp_path / "song.mp3", tmp_path / "empty"])


def test_the_synthetic_library_is_found_as_its_manifest_says(tmp_path):
    manifest = make_library_tree(tmp_path / "lib", tracks=14, seconds=2.0)
    found = find_audio_files([tmp_path / "lib"])
    names = {str(p.relative_to(tmp_path / "lib")) for p in found.files}
    assert len(found.files) == manifest["tracks"] == 14
    assert names == set(manifest["music"]) | set(manifest["flagged"]) | set(manifest["broken"])
    assert {p.suffix for p in found.files} == {".mp3", ".wav"}
    assert dict(found.skipped) == manifest["skipped"]
    assert not any("Favourites" in str(p) for p in found.files)  # the album is read where it lies
