"""Any labelled collection listed in a CSV manifest (``data=csv``): ``data.root`` is the manifest,
one ``path,label[,split]`` row per track:

.. code-block:: text

    path,label,split
    audio/first song.mp3,rock,train
    "audio/Live, at the Café.flac",jazz,test
    /music/elsewhere/track 7.wav,rock,val

* ``path``: an audio file, relative to the manifest's folder (or absolute). The track id is
  that path without its extension (``audio/first song``), as ``data=folders`` names tracks.
* ``label``: any text; the classes are the labels that keep at least one usable track.
* ``split`` (optional, for every row or none): ``train``, ``val`` or ``test`` (``training``,
  ``validation`` also read); ``data.split=official`` then uses it.

A first row ``path,label[,split]`` is a header and is skipped; the file may start with a byte
order mark (spreadsheets write one). The guarantees are ``data=folders``'s: every file is
looked at, and one that is missing, empty, cannot be decoded or is too short is skipped and
listed with its reason; rows that name the same file again are read once, and files that
differ only in their extension are copies of one track (the first usable one in the
manifest's order wins); a malformed manifest is one line that names the row.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path, PurePosixPath

from genre_cls.data.datasets import Dataset
from genre_cls.data.synth import render_clip
from genre_cls.data.synth.trees import MANIFEST, write_audio
from genre_cls.data.tracks import Track, TrackIndex, collection_index, file_problems, log_skipped, same_files
from genre_cls.errors import DataRootError

log = logging.getLogger(__name__)

MANIFEST_LAYOUT = "a CSV manifest of path,label[,split] rows (paths relative to it)"
#: The split cells a manifest may hold, and the part each one means.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
DUPLICATE_RULE = ("rows naming the same file are read once; files that differ only in their extension are copies "
                  "of one track: the first usable one in the manifest's order wins")


def _rows(manifest: Path) -> list[tuple[int, list[str]]]:
    """The manifest's data rows as ``(line number, cells)``, header and blank lines left out."""
    rows = []
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            end = reader.line_num
            for row in reader:  # numbered by its first line: a quoted field may span several
                rows.append((end + 1, [cell.strip() for cell in row]))
                end = reader.line_num
    except UnicodeDecodeError:
        raise DataRootError(f"{manifest} is not UTF-8 text: save the manifest as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataRootError(f"{manifest} is not a readable CSV file ({exc}): expected {MANIFEST_LAYOUT}") from None
    rows = [(n, row) for n, row in rows if any(row)]
    if rows and [c.lower() for c in rows[0][1]] in (["path", "label"], ["path", "label", "split"]):
        rows = rows[1:]
    if not rows:
        raise DataRootError(f"{manifest} lists no track: expected {MANIFEST_LAYOUT}")
    return rows


def _read(manifest: Path) -> list[tuple[int, str, str, str | None]]:
    """``(line, path, label, part or None)`` per row; a malformed row is one :class:`DataRootError`."""
    out = []
    widths = set()
    for line, row in _rows(manifest):
        if len(row) not in (2, 3) or not row[0] or not row[1]:
            raise DataRootError(
                f"{manifest} line {line}: expected path,label or path,label,split with a path and a label, "
                f"got {','.join(row)[:80]!r}"
            )
        widths.add(len(row))
        part = None
        if len(row) == 3:
            part = SPLIT_NAMES.get(row[2].lower())
            if part is None:
                raise DataRootError(f"{manifest} line {line}: split {row[2]!r} is not one of train, val, test")
        out.append((line, row[0], row[1], part))
    if len(widths) > 1:
        raise DataRootError(f"{manifest}: some rows have a split and some do not: give every row one, or none")
    return out


def index_csv(
    root: str | os.PathLike, min_seconds: float = 1.0, check_files: bool = True, progress: bool = False
) -> TrackIndex:
    """Index the tracks a CSV manifest lists (see the module docstring).

    Args:
        root: the manifest file.
        min_seconds: shorter audio is skipped.
        check_files: open every file to detect unusable ones (disable only for trusted files).
        progress: a progress bar while the files are checked.

    Raises:
        DataRootError: the manifest is missing, malformed, or lists no usable file.
    """
    manifest = Path(root).expanduser()
    if not manifest.is_file():
        what = "is a folder" if manifest.is_dir() else "does not exist"
        raise DataRootError(f"data root {str(manifest)!r} {what}: set data.root to {MANIFEST_LAYOUT}")
    base = manifest.parent
    candidates: dict[str, list[tuple[Path, str, str | None]]] = {}
    seen: dict[Path, tuple[int, str]] = {}
    skipped: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    for line, cell, label, part in _read(manifest):
        path = Path(os.path.normpath(base / Path(cell).expanduser()))
        if path in seen:
            first, first_label = seen[path]
            if first_label != label:
                raise DataRootError(f"{manifest} line {line}: {cell} is listed on line {first} with label {first_label!r}, "
                                    f"here with {label!r}: give each file one label")
            continue
        seen[path] = (line, label)
        try:
            rel = PurePosixPath(path.relative_to(base).as_posix())
        except ValueError:  # outside the manifest's folder: its absolute path names it
            rel = PurePosixPath(path.as_posix())
        tid = str(rel.with_suffix(""))
        known = candidates.get(tid)
        if known and (known[0][1], known[0][2]) != (label, part):
            raise DataRootError(f"{manifest} line {line}: {cell} is a copy of {known[0][0]} (the same track in another "
                                f"format) with another label or split: give the copies the same")
        candidates.setdefault(tid, []).append((path, label, part))
    # One file is one track: rows that reach it by another path (a link, a hard link) are read once.
    row_of = {path: (label, part) for copies in candidates.values() for path, label, part in copies}
    same = same_files([path for path in row_of if path.exists()], base)
    for path, kept in same.items():
        if row_of[path] != row_of[kept]:
            raise DataRootError(f"{manifest}: {path} and {kept} are one file (through a link) listed with another label "
                                "or split: list it once, or give both rows the same")
        duplicates[str(path)] = str(kept)
    problems = file_problems([p for copies in candidates.values() for p, _, _ in copies if p not in same],
                             min_seconds, progress) if check_files else {}
    tracks = []
    for tid, copies in candidates.items():
        chosen = None
        unusable: dict[str, str] = {}
        for path, label, part in copies:
            if path in same:
                continue
            why = "the file does not exist" if not path.exists() else problems.get(path)
            if why is not None:
                unusable[str(path)] = why
            elif chosen is None:
                chosen = path
                tracks.append(Track(tid, label, audio=path, split=part))
            else:
                duplicates[str(path)] = str(chosen)
        skipped.update({p: f"{why}; {chosen} is used instead" if chosen else why for p, why in unusable.items()})
    log_skipped(skipped)
    if not tracks:
        raise DataRootError(f"none of the {len(skipped)} files {manifest} lists is usable (see the warnings above)")
    labels = [label for copies in candidates.values() for _, label, _ in copies]
    return collection_index(manifest, "csv", tracks, labels, skipped, duplicates, DUPLICATE_RULE)


# --------------------------------------------------------------------------- a synthetic manifest

#: Label -> the GTZAN style its synthetic tracks are rendered in (:func:`make_csv_tree`).
CSV_LABELS = {"Rock, live": "rock", "Bossa Nova": "jazz", "électronique": "disco"}


def make_csv_tree(out: str | os.PathLike, tracks_per_label: int = 3, seconds: float = 4.0, seed: int = 0,
                  splits: bool = True, sr: int = 22050) -> Path:
    """Write audio files and a manifest listing them into ``out``; return the manifest's path.

    Each label's first track is in the test part, its second in val, the rest in train (with
    ``splits``; else the manifest has no split column). Besides the usable tracks the manifest
    lists what a real one may: a header, a path with a comma (quoted), a file in a sub-folder,
    one outside the manifest's folder (by an absolute path), the same file twice, a missing
    file, an empty one and one too short. The hidden :data:`MANIFEST` names the usable tracks.
    """
    out = Path(out)
    if tracks_per_label < 3 and splits:
        raise ValueError("make_csv_tree needs at least 3 tracks per label for its splits")
    rows: list[list[str]] = []
    usable: dict[str, dict] = {}
    for li, (label, style) in enumerate(CSV_LABELS.items()):
        for i in range(tracks_per_label):
            rel = f"audio/{label}/{'Live, take' if i % 2 else 'song'} {i + 1}.{('wav', 'flac', 'ogg')[i % 3]}"
            write_audio(out / rel, render_clip(style, seed, (li, i), seconds, sr), sr, rel.rsplit(".", 1)[1])
            part = ("test", "val")[i] if i < 2 else "train"
            rows.append([rel, label] + ([part] if splits else []))
            usable[rel.rsplit(".", 1)[0]] = {"label": label, "split": part if splits else None, "file": rel}
    elsewhere = out.parent / f"{out.name} elsewhere" / "guest.wav"
    write_audio(elsewhere, render_clip("rock", seed, (97, 0), seconds, sr), sr, "wav")
    rows.append([str(elsewhere), "Rock, live"] + (["train"] if splits else []))
    usable[str(PurePosixPath(elsewhere.as_posix()).with_suffix(""))] = {"label": "Rock, live", "split": "train" if splits else None,
                                                                         "file": str(elsewhere)}
    rows.append([rows[0][0], rows[0][1]] + (rows[0][2:] if splits else []))  # the same file again
    broken = {"audio/missing.wav": "missing", "audio/empty.wav": "empty", "audio/short.wav": "too short"}
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "audio" / "empty.wav").write_bytes(b"")
    write_audio(out / "audio" / "short.wav", render_clip("pop", seed, (98, 0), 0.5, sr), sr, "wav")
    rows += [[path, "Bossa Nova"] + (["train"] if splits else []) for path in broken]
    manifest = out / "tracks.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"] if splits else ["path", "label"])
        writer.writerows(rows)
    (out / MANIFEST).write_text(json.dumps({"dataset": "csv", "tracks": usable, "broken": broken}, ensure_ascii=False, indent=1))
    return manifest


def write_synthetic(out: Path, tracks_per_label: int = 3, seconds: float = 4.0, seed: int = 0) -> Path:
    """A synthetic manifest with a split column and its audio in ``out`` (:func:`make_csv_tree`)."""
    return make_csv_tree(out, tracks_per_label=max(3, tracks_per_label), seconds=seconds, seed=seed)


DATASET = Dataset("csv", MANIFEST_LAYOUT, index_csv, write_synthetic, root_is_file=True)
