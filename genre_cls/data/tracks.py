"""What every data set's index is made of: :class:`Track` and :class:`TrackIndex`, and the checks
that find unusable files by looking at them (never by name): :func:`audio_problem`,
:func:`image_problem`, :func:`file_problems` (many files, read by threads)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from PIL import Image

from genre_cls import GENRES
from genre_cls.data.audio import SR, AudioDecodeError, content_problem, header_problem, load_audio
from genre_cls.data.processes import progress_bar
from genre_cls.errors import DataRootError, one_line

log = logging.getLogger(__name__)

#: The audio files a collection's indexer reads, in the order copies of one track compete.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")
# A stratified split puts one track of a class in each of train, val and test from this many on.
MIN_TRACKS_PER_CLASS = 3


@dataclass(frozen=True)
class Track:
    """One labelled track: its id, label, the usable files that belong to it and, where the
    dataset defines them, its predefined part (``"train"``, ``"val"`` or ``"test"``) and artist."""

    track_id: str
    label: str
    audio: Path | None = None
    image: Path | None = None
    split: str | None = None
    artist: str | None = None


@dataclass
class TrackIndex:
    """The usable tracks of a dataset under ``root`` (sorted by id), its classes and the files
    that were skipped. ``extra`` holds dataset-specific counts that :meth:`summary` reports."""

    root: Path
    layouts: list[str]
    tracks: list[Track]
    skipped: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=lambda: list(GENRES))
    dataset: str = "gtzan"
    extra: dict = field(default_factory=dict)

    def with_audio(self) -> list[Track]:
        return [t for t in self.tracks if t.audio is not None]

    def with_images(self) -> list[Track]:
        return [t for t in self.tracks if t.image is not None]

    def summary(self) -> dict:
        """A JSON-ready description: the dataset and its classes, counts per class and modality,
        skipped files and why, and the dataset's ``extra`` entries."""
        per_class = {c: sum(t.label == c for t in self.tracks) for c in self.classes}
        out = {
            "dataset": self.dataset,
            "root": str(self.root),
            "layouts": self.layouts,
            "classes": list(self.classes),
            "tracks": len(self.tracks),
            "tracks_with_audio": len(self.with_audio()),
            "tracks_with_images": len(self.with_images()),
            "tracks_per_class": per_class,
        }
        if self.dataset == "gtzan":  # GTZAN's summaries named the classes genres
            out["tracks_per_genre"] = per_class
        out |= {"skipped": dict(self.skipped), "duplicates_dropped": dict(self.duplicates)}
        return out | self.extra


def audio_problem(path: Path, min_seconds: float, decode: bool = False) -> str | None:
    """Why ``path`` is not usable audio (``None`` when it is), from its header and length, and
    with ``decode`` from its samples too (what feature extraction and rendering will read)."""
    if (what := content_problem(path)) is not None:
        return what
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for garbage input
        return f"cannot be decoded ({one_line(exc, path)})"
    if info.samplerate <= 0 or info.frames <= 0:
        return "holds no audio samples"
    if (why := header_problem(int(info.samplerate), int(info.channels))) is not None:
        return why
    seconds = info.frames / info.samplerate
    if seconds < min_seconds:
        return f"too short ({seconds:.2f} s < {min_seconds:g} s)"
    if decode:
        try:
            samples = len(load_audio(path))
        except AudioDecodeError as exc:
            return exc.reason
        if samples / SR < min_seconds:
            return f"too short once decoded ({samples / SR:.2f} s < {min_seconds:g} s)"
    return None


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image (``None`` when it is)."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            if min(im.size) < 8:
                return f"image too small ({im.size[0]}x{im.size[1]})"
    except Exception as exc:
        return f"not a readable image ({one_line(exc, path)})"
    return None


def file_problems(paths: Sequence[Path], min_seconds: float, progress: bool) -> dict[Path, str | None]:
    """Why each file is unusable (``None``: usable), read by threads: soundfile releases the GIL,
    and a large collection on a network disk waits on I/O more than on the CPU."""

    def problem(path: Path) -> str | None:
        try:
            if path.stat().st_size == 0:
                return "the file is empty (0 bytes)"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        return audio_problem(path, min_seconds)

    bar = progress_bar(len(paths), progress, "checking files", "file")
    out: dict[Path, str | None] = {}
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        for path, why in zip(paths, pool.map(problem, paths)):
            out[path] = why
            bar.update(1)
    bar.close()
    return out


def file_identity(path: str | os.PathLike) -> tuple[int, int] | str:
    """What makes two paths one file: its device and inode (a symlink, a linked folder on the way or
    a hard link all lead to the same), or its resolved real path where the file system gives no
    inode (or the file cannot be read: its own check says why)."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)


def _link_on_the_way(path: Path, root: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` down to ``path`` (the file itself included),
    or ``None`` when ``path`` is reached through real folders only."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return path if path.is_symlink() else None
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            return here
    return None


def same_files(paths: Sequence[Path], root: Path) -> dict[Path, Path]:
    """Of ``paths`` that lead to one file (:func:`file_identity`: through a symlink, a linked folder
    or a hard link), one is the track and the others are not: the one reached without a link, else
    the first in ``paths``' order. Returns ``{path not used: path used instead}``, and says in one
    warning which links were skipped (a link to a folder counted once, with its files).

    The same audio under two labels would otherwise be two tracks of two classes, one of them
    perhaps in training and the other in the test split."""
    groups: dict[tuple[int, int] | str, list[Path]] = {}
    for path in paths:
        groups.setdefault(file_identity(path), []).append(path)
    dropped: dict[Path, Path] = {}
    links: dict[Path, list[Path]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        kept = next((p for p in group if _link_on_the_way(p, root) is None), group[0])
        for path in group:
            if path is not kept:
                dropped[path] = kept
                links.setdefault(_link_on_the_way(path, root) or path, []).append(path)
    if links:
        def shown(link: Path) -> str:
            files = links[link]
            target = os.path.realpath(link) if link.is_symlink() else f"the same file as {dropped[files[0]]} (a hard link)"
            return f"{link} -> {target}" + (f" ({len(files)} files)" if len(files) > 1 else "")

        names = sorted(links, key=str)
        more = f" and {len(names) - 5} more links" if len(names) > 5 else ""
        log.warning(
            "%d file%s reached through another path to a file already indexed %s not read again (one audio file is "
            "one track, not one per label or link; data_summary.json lists them under duplicates_dropped): %s%s",
            len(dropped), "s" * (len(dropped) != 1), "are" if len(dropped) != 1 else "is",
            "; ".join(shown(link) for link in names[:5]), more,
        )
    return dropped


def existing_root(root: str | os.PathLike, what: str) -> Path:
    """``root`` as a path, when it is a folder; else one :class:`DataRootError` naming ``what`` it must hold."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(f"data root {str(root)!r} does not exist: set data.root to {what}")
    return root


def log_skipped(skipped: dict[str, str]) -> None:
    """One warning per skipped file, with why."""
    for path, why in skipped.items():
        log.warning("skipping %s: %s", path, why)


def warn_small_classes(tracks: Sequence[Track], classes: Sequence[str], root: Path) -> None:
    """One warning naming the classes too small for a stratified split to give every side a track."""
    small = {c: n for c in classes if (n := sum(t.label == c for t in tracks)) < MIN_TRACKS_PER_CLASS}
    if small:
        log.warning(
            "under %s, %s: a stratified split needs at least %d tracks per class to put one in each of "
            "train, val and test; with data.split=track such a class only trains (it is never validated "
            "or tested), with data.folds its tracks are dealt into the folds as usual",
            root, ", ".join(f"{c!r} has {n} usable track{'s' * (n != 1)}" for c, n in small.items()),
            MIN_TRACKS_PER_CLASS,
        )


def collection_index(root: Path, dataset: str, tracks: list[Track], labels: Sequence[str], skipped: dict[str, str],
                     duplicates: dict[str, str], rule: str) -> TrackIndex:
    """The index of a labelled collection (``data=folders``, ``data=csv``): its classes are the
    labels that keep a usable track (one warning names the others, and one the classes too small
    to split), sorted; ``rule`` says which of two copies of a track is used."""
    tracks = sorted(tracks, key=lambda t: t.track_id)
    classes = sorted({t.label for t in tracks})
    if empty := [label for label in sorted(set(labels)) if label not in classes]:
        log.warning("labels without a usable audio file are not classes: %s", ", ".join(empty))
    warn_small_classes(tracks, classes, root)
    return TrackIndex(
        root=root, layouts=[dataset], tracks=tracks, skipped=skipped, duplicates=duplicates, classes=classes,
        dataset=dataset, extra={"duplicate_rule": rule, "labels_without_tracks": empty},
    )
