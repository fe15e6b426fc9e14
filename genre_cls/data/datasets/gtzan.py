"""GTZAN (``data=gtzan``, the default): find every track under a data root and detect unusable
files by looking at them.

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
*usable* one wins: a copy that cannot be used for any reason (undecodable, too short, or,
found by decoding it, non-finite or absurd samples) is skipped, with the copy used instead
named in its reason, and the next copy is used. Only a copy that has another behind it is
decoded here (a single copy is decoded once, when its features or image are made). The
copies that lost are listed in :attr:`TrackIndex.duplicates` (dropped file -> the file used)
and in the summary's ``duplicates_dropped``. Images follow the same folder order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from genre_cls import GENRES
from genre_cls.data.datasets import Dataset
from genre_cls.data.splits import genre_of
from genre_cls.data.synth import GENERATING, generate
from genre_cls.data.tracks import Track, TrackIndex, audio_problem, image_problem, same_files
from genre_cls.errors import DataRootError

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
    """The winning file of each track id: the first usable candidate (see "Duplicates").
    ``problem(path, decode)`` says why a file is unusable; ``decode`` is true for a copy that
    has another behind it."""
    chosen: dict[str, Path] = {}
    for tid, paths in candidates.items():
        unusable: dict[str, str] = {}
        for i, path in enumerate(paths):
            # A copy with another behind it is decoded now: found unusable later, it could no
            # longer give way to the next copy.
            why = problem(path, i < len(paths) - 1) if check_files else None
            if why is None:
                chosen[tid] = path
                break
            unusable[str(path)] = why
        used = chosen.get(tid)
        skipped.update({p: f"{why}; {used} is used instead" if used else why for p, why in unusable.items()})
        if used is not None:
            for path in paths[paths.index(used) + 1 :]:
                duplicates[str(path)] = str(used)
    return chosen


def index_gtzan(root: str | Path, min_seconds: float = 10.0, check_files: bool = True, progress: bool = False) -> TrackIndex:
    """Index the GTZAN tree under ``root``.

    Args:
        root: a folder holding a Kaggle, marsyas and/or flat layout (directly or under ``Data/``).
        min_seconds: audio shorter than this is "far too short" for a 30 s clip and skipped.
        check_files: open every file to detect corrupt ones (disable only for trusted trees).
        progress: accepted like every indexer's (GTZAN's thousand files are checked in seconds).

    Raises:
        DataRootError: ``root`` does not exist or holds no known layout.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(
            f"data root {str(root)!r} does not exist: set data.root to a GTZAN download "
            f"(layouts: {layouts_text()}) or to null for the synthetic set"
        )
    if (root / GENERATING).exists():
        raise DataRootError(
            f"{str(root)!r} is a synthetic set still being generated, or whose generation was stopped "
            f"({GENERATING} is there): wait for python -m genre_cls.data.synth to finish, or run it again"
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
    chosen_audio = _pick(audio, lambda p, decode: audio_problem(p, min_seconds, decode), check_files, skipped, duplicates)
    chosen_images = _pick(images, lambda p, decode: image_problem(p), check_files, skipped, duplicates)
    # One file is one track: a track id whose file is a link to (or a hard link of) another's is not read again.
    for chosen in (chosen_audio, chosen_images):
        same = same_files([chosen[tid] for tid in sorted(chosen)], root)
        for tid in [tid for tid, path in chosen.items() if path in same]:
            path = chosen.pop(tid)
            duplicates[str(path)] = str(same[path])
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
        classes=list(GENRES), dataset="gtzan", extra={"duplicate_rule": DUPLICATE_RULE},
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


def write_synthetic(out: Path, tracks_per_label: int = 3, seconds: float = 30.0, seed: int = 0) -> Path:
    """A synthetic GTZAN in the Kaggle layout in ``out`` (:func:`genre_cls.data.synth.generate`)."""
    return generate(out, tracks_per_genre=tracks_per_label, seed=seed, duration=seconds, progress=False)


DATASET = Dataset("gtzan", "GTZAN (Kaggle genres_original/ + images_original/, marsyas genres/, or flat <genre>/ folders)",
                  index_gtzan, write_synthetic, synthetic_default=True)
