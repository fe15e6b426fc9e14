"""Any labelled collection as a folder tree (``data=folders``): ``<root>/<label>/**/<audio file>``.

The label is the first folder under the root; the track id is the file's path under the root
without its extension (``rock/Live at X/01 Intro``), so any file name works. Hidden files and
folders are ignored. As for GTZAN, every file is looked at: one that is missing, empty, cannot be
decoded or is too short is skipped and listed in :attr:`TrackIndex.skipped` with the reason. The
classes are the labels that keep at least one usable track.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from genre_cls.data.datasets import Dataset
from genre_cls.data.synth import render_clip
from genre_cls.data.synth.trees import FORMATS, MANIFEST, write_audio
from genre_cls.data.tracks import (
    AUDIO_EXTENSIONS, Track, TrackIndex, collection_index, existing_root, file_problems, log_skipped, same_files,
)
from genre_cls.errors import DataRootError

log = logging.getLogger(__name__)

FOLDERS_LAYOUT = "<root>/<label>/**/<audio file>"
FOLDER_DUPLICATE_RULE = (
    "files that differ only in their extension are copies of one track: the first usable one wins, "
    f"in the order {', '.join(AUDIO_EXTENSIONS)}"
)
#: Label folder -> the GTZAN style its synthetic tracks are rendered in (:func:`make_folder_tree`).
FOLDER_LABELS = {
    "Hip-Hop & Rap": "hiphop",
    "Classique (Baroque, Romantique)": "classical",
    "Électro": "disco",
    "jazz.fusion": "jazz",
    "Rock #1": "rock",
    "Folk, Country": "country",
    "メタル": "metal",
}
# Name patterns of the synthetic tree's files: spaces, commas, dots, '#', non-ASCII, nesting.
_NAMES = (
    "{i:02d} - Song number {i}",
    "Live, at the Café #{i} (encore)",
    "v1.2.{i} final.mix",
    "Album {i} (Disc 1)/{i:02d}. Intro",
    "Symphony #{i}",
    "Deep/er/Nested {i}/track",
    "曲 {i}",
)


def index_folders(
    root: str | os.PathLike,
    min_seconds: float = 1.0,
    check_files: bool = True,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    progress: bool = False,
) -> TrackIndex:
    """Index a ``<root>/<label>/**/<audio file>`` tree.

    Args:
        root: the folder that holds one folder per label (files below a label folder, at any
            depth, belong to that label; files directly under ``root`` are ignored).
        min_seconds: shorter audio is skipped.
        check_files: open every file to detect unusable ones (disable only for trusted trees).
        extensions: the file extensions read, case-insensitively; their order decides which of
            two files that differ only in extension is used.
        progress: a progress bar while the files are checked.

    Raises:
        DataRootError: ``root`` does not exist, holds no label folder, no audio file, or no usable one.
    """
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    what = f"a folder laid out as {FOLDERS_LAYOUT} ({', '.join(exts)})"
    root = existing_root(root, what)
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise DataRootError(f"no label folders under {str(root)!r}: expected {what}")

    candidates: dict[str, list[Path]] = {}
    label_of: dict[str, str] = {}
    skipped: dict[str, str] = {}
    root_real = os.path.realpath(root)
    for label in labels:
        # Linked folders are followed (albums linked in from elsewhere are common), each real folder
        # once per label: a link back to a folder already read, or to the root, would loop or count twice.
        seen = {os.path.realpath(root / label)}
        for folder, dirs, files in os.walk(root / label, followlinks=True):
            kept = []
            for d in sorted(d for d in dirs if not d.startswith(".")):
                real = os.path.realpath(os.path.join(folder, d))
                if real in seen or root_real == real or root_real.startswith(real.rstrip(os.sep) + os.sep):
                    log.warning("not following %s: it leads to a folder already read or to one holding the root", os.path.join(folder, d))
                    continue
                seen.add(real)
                kept.append(d)
            dirs[:] = kept
            for name in sorted(files):
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in exts:
                    continue
                rel = PurePosixPath(path.relative_to(root).as_posix())
                tid = str(rel.with_suffix(""))
                try:
                    tid.encode("utf-8")
                except UnicodeEncodeError:  # bytes that are no UTF-8 text: no id can name it in a JSON file
                    skipped[str(path)] = "its file name is not valid UTF-8 text: rename it"
                    continue
                candidates.setdefault(tid, []).append(path)
                label_of[tid] = label
    if not candidates and not skipped:
        raise DataRootError(f"no audio files under the label folders of {str(root)!r}: expected {what}")

    # One file is one track: a second path to it (a link into another label's folder, a linked
    # album, a hard link) is dropped, whatever label it is under.
    same = same_files([p for ps in candidates.values() for p in ps], root)
    duplicates: dict[str, str] = {str(path): str(kept) for path, kept in same.items()}
    for tid in list(candidates):
        candidates[tid] = [p for p in candidates[tid] if p not in same]
        if not candidates[tid]:
            del candidates[tid]
    for paths in candidates.values():
        paths.sort(key=lambda p: exts.index(p.suffix.lower()))
    problems = file_problems([p for ps in candidates.values() for p in ps], min_seconds, progress) if check_files else {}
    chosen: dict[str, Path] = {}
    for tid, paths in candidates.items():
        unusable: dict[str, str] = {}
        for path in paths:
            if (why := problems.get(path)) is None:
                chosen.setdefault(tid, path)
                if chosen[tid] is not path:
                    duplicates[str(path)] = str(chosen[tid])
            else:
                unusable[str(path)] = why
        used = chosen.get(tid)  # a copy in another format that is used instead of an unusable one
        skipped.update({p: f"{why}; {used} is used instead" if used else why for p, why in unusable.items()})
    log_skipped(skipped)
    if not chosen:
        raise DataRootError(
            f"none of the {len(skipped)} audio files under {str(root)!r} is usable (see the warnings above): "
            f"expected {what}"
        )
    tracks = [Track(tid, label_of[tid], audio=chosen[tid]) for tid in chosen]
    return collection_index(root, "folders", tracks, labels, skipped, duplicates, FOLDER_DUPLICATE_RULE)



# --------------------------------------------------------------------------- a synthetic tree


def make_folder_tree(
    out: str | os.PathLike,
    labels: dict[str, str] | None = None,
    tracks_per_label: int = 4,
    seconds: float = 6.0,
    formats: tuple[str, ...] = ("wav", "flac", "ogg", "mp3"),
    seed: int = 0,
    sr: int = 22050,
    long_seconds: float | None = 32.0,
    short_seconds: float | None = 2.0,
) -> Path:
    """Write a ``data=folders`` tree into ``out`` and return ``out``.

    Args:
        labels: label folder name -> GTZAN style (default :data:`FOLDER_LABELS`: 7 odd names).
        tracks_per_label: tracks in each label folder.
        seconds: the usual track length; track ``i`` lasts ``seconds * (0.75 + 0.125 * (i % 4))``.
        formats: extensions written, in turn (``wav``, ``flac``, ``ogg``, ``mp3``).
        long_seconds: the first label's first track lasts this long (longer than a 30 s clip);
            ``None``: no long track.
        short_seconds: the last label's last track lasts this long; ``None``: none.

    Every track written is usable; the manifest maps each track id to its label and length.
    """
    out = Path(out)
    labels = dict(FOLDER_LABELS if labels is None else labels)
    if tracks_per_label < 1 or not labels:
        raise ValueError("make_folder_tree needs at least one label and one track per label")
    if bad := [f for f in formats if f.lower() not in FORMATS]:
        raise ValueError(f"unknown format {bad[0]!r}: choose from {', '.join(FORMATS)}")
    tracks: dict[str, dict] = {}
    k = 0
    for li, (label, style) in enumerate(labels.items()):
        for i in range(tracks_per_label):
            ext = formats[k % len(formats)]
            k += 1
            name = _NAMES[(li + i) % len(_NAMES)].format(i=i + 1)
            if (li + i) % 5 == 4:
                ext_written = ext.upper()  # SONG.WAV from an old ripper
            else:
                ext_written = ext
            length = seconds * (0.75 + 0.125 * (i % 4))
            if long_seconds is not None and li == 0 and i == 0:
                length = long_seconds
            if short_seconds is not None and li == len(labels) - 1 and i == tracks_per_label - 1:
                length = short_seconds
            rel = f"{label}/{name}"
            write_audio(out / f"{rel}.{ext_written}", render_clip(style, seed, (li, i), length, sr), sr, ext)
            tracks[rel] = {"label": label, "seconds": length, "file": f"{rel}.{ext_written}"}
        # What a real collection holds besides audio: none of it is a track.
        (out / label / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        (out / label / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    hidden = out / ".trash" / "old"
    hidden.mkdir(parents=True, exist_ok=True)
    write_audio(hidden / "deleted.wav", render_clip("rock", seed, (99, 0), 2.0, sr), sr, "wav")
    write_audio(out / "unsorted.wav", render_clip("pop", seed, (99, 1), 2.0, sr), sr, "wav")
    (out / MANIFEST).write_text(json.dumps({"dataset": "folders", "tracks": tracks}, ensure_ascii=False, indent=1))
    return out



def write_synthetic(out: Path, tracks_per_label: int = 3, seconds: float = 4.0, seed: int = 0) -> Path:
    """A synthetic folder tree in ``out`` (:func:`make_folder_tree`)."""
    return make_folder_tree(out, tracks_per_label=tracks_per_label, seconds=seconds, seed=seed)


DATASET = Dataset("folders", f"your collection, one sub-folder per label ({FOLDERS_LAYOUT})", index_folders, write_synthetic)
