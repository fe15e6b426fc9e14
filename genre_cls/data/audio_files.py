"""The audio files a user's inputs name: files as given, folders walked (:func:`find_audio_files`).

A folder is walked recursively in name order. Linked folders are followed, each real folder once
(a link back to a folder already read, or to one that holds it, would loop or count twice); a file
reached twice (by two links, or named twice) is predicted once. Hidden files and folders (a name
starting with ``.``) and files whose extension is not audio (:data:`AUDIO_EXTENSIONS`) are skipped
and counted, never read. Files named directly are kept whatever their extension: decoding them
says whether they are audio.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genre_cls.data.tracks import AUDIO_EXTENSIONS
from genre_cls.errors import UserError

#: Why a file under a folder was not predicted, by what :attr:`AudioFiles.skipped` counts.
SKIP_REASONS = {
    "hidden": "hidden",
    "not_audio": "not audio",
    "duplicate": "reached twice",
    "link_loop": "links to a folder already read",
    "unreadable": "unreadable folders",
}


@dataclass
class AudioFiles:
    """The files to predict, in input order (a folder's files in name order), and what was left
    out: ``skipped`` counts by :data:`SKIP_REASONS` key; ``folders`` how many folders were walked."""

    files: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    folders: int = 0

    def summary(self) -> str:
        """``1,000 audio files in 12 folders (skipped: 3 hidden, 12 not audio)``."""
        left = ", ".join(f"{n:,} {SKIP_REASONS[k]}" for k, n in sorted(self.skipped.items()) if n)
        where = f" in {self.folders:,} folder{'s' * (self.folders != 1)}" if self.folders else ""
        return f"{len(self.files):,} audio file{'s' * (len(self.files) != 1)}{where}" + (f" (skipped: {left})" if left else "")


def is_audio_name(name: str) -> bool:
    """Whether a file name has one of the audio extensions a folder walk reads (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def find_audio_files(inputs: Sequence[str | os.PathLike]) -> AudioFiles:
    """Every audio file that ``inputs`` name: a file as given (a missing one too: predicting it
    says so), a folder's audio files at any depth.

    Raises :class:`~genre_cls.errors.UserError` for a folder that holds no audio file (with what
    was skipped in it): a wrong folder is better said before any work than after.
    """
    found = AudioFiles()
    seen: set[str] = set()
    for given in inputs:
        path = Path(os.path.expanduser(str(given)))
        if not path.is_dir():
            real = os.path.realpath(path)
            if real in seen:
                found.skipped["duplicate"] += 1
                continue
            seen.add(real)
            found.files.append(path)
            continue
        before, skipped_before = len(found.files), found.skipped.copy()
        _walk(path, found, seen)
        if len(found.files) == before:
            left = found.skipped - skipped_before
            what = ", ".join(f"{n:,} {SKIP_REASONS[k]}" for k, n in sorted(left.items())) or "nothing"
            raise UserError(
                f"no audio files under {given} (found {what}): pass a folder that holds "
                f"{', '.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)} files, or the files themselves"
            )
    return found


def _walk(root: Path, found: AudioFiles, seen: set[str]) -> None:
    """Add the audio files under ``root`` to ``found``, depth first in name order, entering each
    real folder once (a folder is marked when it is entered, so that a link to it met later is the
    one left out, not the folder itself)."""
    entered = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in entered:
            found.skipped["link_loop"] += 1
            continue
        entered.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            found.skipped["unreadable"] += 1
            continue
        found.folders += 1
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                found.skipped["hidden"] += 1
                continue
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(Path(entry.path))
                continue
            if not is_audio_name(entry.name):
                found.skipped["not_audio"] += 1
                continue
            real_file = os.path.realpath(entry.path)
            if real_file in seen:
                found.skipped["duplicate"] += 1
                continue
            seen.add(real_file)
            found.files.append(Path(entry.path))
        stack.extend(reversed(subfolders))
