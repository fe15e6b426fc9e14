"""Find every GTZAN track under a data root and detect unusable files by looking at them.

Three layouts are recognised, possibly side by side and possibly under a ``Data/`` (or
``data/``) folder:

* Kaggle: ``genres_original/<g>/<g>.000NN.wav`` and ``images_original/<g>/<g>000NN.png``;
* original (marsyas / torchaudio): ``genres/<g>/<g>.000NN.au`` (or ``.wav``);
* flat (dataset-hub mirrors, many tarballs): ``<g>/<g>.000NN.wav`` (or ``.au``), the genre
  folders directly under the root.

The track id (``jazz.00054``) joins audio and image files. A file that cannot be decoded,
is far too short or is not an image is skipped, named in one warning and recorded in
:attr:`TrackIndex.skipped`; nothing is excluded by name.

**Duplicates.** When a tree holds one track id more than once (a ``.wav`` and an ``.au``,
a Kaggle and a flat copy, the same layout at the root and under ``Data/``), the candidates
are ordered by layout (Kaggle, then marsyas, then flat), then by folder (the root itself,
then ``Data/``, then ``data/``), then by extension (``.wav`` before ``.au``), and the first
*usable* one wins: a corrupt first copy is skipped and the next copy is used. The copies
that lost are listed in :attr:`TrackIndex.duplicates` (dropped file -> the file used) and
in the summary's ``duplicates_dropped``. Images follow the same folder order.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from PIL import Image

from genre_cls import GENRES
from genre_cls.errors import DataRootError, one_line
from genre_cls.data.splits import genre_of

log = logging.getLogger(__name__)

LAYOUTS = {
    "kaggle": "genres_original/<genre>/<genre>.000NN.wav and images_original/<genre>/<genre>000NN.png",
    "marsyas": "genres/<genre>/<genre>.000NN.au",
    "flat": "<genre>/<genre>.000NN.wav or .au directly under the root",
}
# The order in which copies of one track compete (see "Duplicates" above).
AUDIO_FOLDERS = (("kaggle", "genres_original"), ("marsyas", "genres"), ("flat", "."))
AUDIO_EXTS = (".wav", ".au")
DUPLICATE_RULE = (
    "the first usable copy wins, ordered by layout (kaggle, marsyas, flat), "
    "then folder (root, Data/, data/), then extension (.wav before .au)"
)
AUDIO_RE = re.compile(r"^([a-z]+)\.(\d{5})\.(wav|au)$", re.IGNORECASE)
IMAGE_RE = re.compile(r"^([a-z]+)\.?(\d{5})\.png$", re.IGNORECASE)


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

    @property
    def genre(self) -> str:
        """The label under its GTZAN name (older callers)."""
        return self.label


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
        if self.dataset == "gtzan":
            out["tracks_per_genre"] = per_class
        out |= {"skipped": dict(self.skipped), "duplicates_dropped": dict(self.duplicates)}
        if self.dataset == "gtzan":
            out["duplicate_rule"] = DUPLICATE_RULE
        return out | self.extra


# The name the GTZAN-only code knew it by.
GTZANIndex = TrackIndex


def audio_problem(path: Path, min_seconds: float) -> str | None:
    """Why ``path`` is not usable audio (``None`` when it is), from its header and length."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for garbage input
        return f"cannot be decoded ({one_line(exc, path)})"
    if info.samplerate <= 0 or info.frames <= 0:
        return "holds no audio samples"
    seconds = info.frames / info.samplerate
    if seconds < min_seconds:
        return f"too short ({seconds:.2f} s < {min_seconds:g} s)"
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


def _bases(root: Path) -> list[Path]:
    """The root, ``Data/`` and ``data/`` that exist, each once (one folder on a case-insensitive disk)."""
    bases: dict[Path, Path] = {}
    for base in (root, root / "Data", root / "data"):
        if base.is_dir():
            bases.setdefault(base.resolve(), base)
    return list(bases.values())


def layouts_text() -> str:
    """Every layout, for messages that tell the user what was looked for."""
    return "; ".join(f"{name}: {where}" for name, where in LAYOUTS.items())


def _scan(folder: Path, pattern: re.Pattern, exts: tuple[str, ...]) -> dict[str, list[Path]]:
    """Map track id -> files for ``<folder>/<genre>/<file>`` entries whose genre is a GTZAN
    genre, each track's files ordered by ``exts``."""
    found: dict[str, list[Path]] = {}
    for genre in GENRES:
        gdir = folder / genre
        if not gdir.is_dir():
            continue
        for path in sorted(gdir.iterdir(), key=lambda p: (exts.index(p.suffix.lower()) if p.suffix.lower() in exts else len(exts), p.name)):
            m = pattern.match(path.name)
            if m and path.suffix.lower() in exts and m.group(1).lower() == genre and path.is_file():
                found.setdefault(f"{genre}.{m.group(2)}", []).append(path)
    return found


def _pick(
    candidates: dict[str, list[Path]], problem, check_files: bool, skipped: dict[str, str], duplicates: dict[str, str]
) -> dict[str, Path]:
    """The winning file of each track id: the first usable candidate (see "Duplicates")."""
    chosen: dict[str, Path] = {}
    for tid, paths in candidates.items():
        for path in paths:
            why = problem(path) if check_files else None
            if why is None:
                chosen[tid] = path
                break
            skipped[str(path)] = why
        if tid in chosen:
            for path in paths[paths.index(chosen[tid]) + 1 :]:
                duplicates[str(path)] = str(chosen[tid])
    return chosen


def index_gtzan(root: str | Path, min_seconds: float = 10.0, check_files: bool = True) -> TrackIndex:
    """Index the GTZAN tree under ``root``.

    Args:
        root: a folder holding a Kaggle, marsyas and/or flat layout (directly or under ``Data/``).
        min_seconds: audio shorter than this is "far too short" for a 30 s clip and skipped.
        check_files: open every file to detect corrupt ones (disable only for trusted trees).

    Raises:
        DataRootError: ``root`` does not exist or holds no known layout.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(
            f"data root {str(root)!r} does not exist: set data.root to a GTZAN download "
            f"(layouts: {layouts_text()}) or to null for the synthetic set"
        )
    audio: dict[str, list[Path]] = {}
    images: dict[str, list[Path]] = {}
    layouts: list[str] = []
    bases = _bases(root)
    for layout, folder in AUDIO_FOLDERS:
        for base in bases:
            found = _scan(base / folder, AUDIO_RE, AUDIO_EXTS)
            if found:
                layouts.append(layout)
            for tid, paths in found.items():
                audio.setdefault(tid, []).extend(paths)
    for base in bases:
        found = _scan(base / "images_original", IMAGE_RE, (".png",))
        if found:
            layouts.append("kaggle")
        for tid, paths in found.items():
            images.setdefault(tid, []).extend(paths)
    if not audio and not images:
        raise DataRootError(
            f"no GTZAN tracks under {str(root)!r}: looked for {layouts_text()} "
            "(also under Data/); point data.root (bench: --root) at the folder that holds them"
        )

    skipped: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    chosen_audio = _pick(audio, lambda p: audio_problem(p, min_seconds), check_files, skipped, duplicates)
    chosen_images = _pick(images, image_problem, check_files, skipped, duplicates)
    for path, why in skipped.items():
        log.warning("skipping %s: %s", path, why)
    if duplicates:
        log.info("%d duplicate files not used (%s)", len(duplicates), DUPLICATE_RULE)

    tracks = [
        Track(tid, genre_of(tid), chosen_audio.get(tid), chosen_images.get(tid))
        for tid in sorted(set(chosen_audio) | set(chosen_images))
    ]
    warn_missing_genres(root, tracks)
    return TrackIndex(
        root=root, layouts=sorted(set(layouts)), tracks=tracks, skipped=skipped, duplicates=duplicates,
        classes=list(GENRES), dataset="gtzan",
    )


def missing_genres(tracks: list[Track]) -> list[str]:
    """The GTZAN genres without a single usable track."""
    present = {t.label for t in tracks}
    return [g for g in GENRES if g not in present]


def warn_missing_genres(root: Path, tracks: list[Track]) -> None:
    """One warning naming the genres that have no usable track under ``root``: a run then trains
    on the others, and its metrics are not comparable with a run on all ten."""
    missing = missing_genres(tracks)
    if missing and tracks:
        log.warning(
            "no usable tracks of %s under %s (a genre folder missing or all its files skipped): "
            "training on the other %d genres; the model keeps all %d outputs",
            ", ".join(missing), root, len(GENRES) - len(missing), len(GENRES),
        )
