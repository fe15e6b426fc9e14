"""Labelled collections beyond GTZAN, indexed like it (:class:`~genre_cls.data.index.TrackIndex`).

* ``folders`` (:func:`index_folders`): any ``<root>/<label>/**/<audio file>`` tree. The label is
  the first folder under the root; the track id is the file's path under the root without its
  extension (``rock/Live at X/01 Intro``), so any file name works. Hidden files and folders
  are ignored.
* ``fma`` (:func:`index_fma`): the Free Music Archive (Defferrard et al. 2017): the metadata
  ``fma_metadata/tracks.csv`` and one audio tree ``fma_small``, ``fma_medium``, ``fma_large``
  or ``fma_full`` (``000/000123.mp3``). Label = the track's top genre, predefined part = its
  official split, artist = its artist id, track id = the six-digit id.

As for GTZAN, every file is looked at: one that is missing, empty, cannot be decoded or is too
short is skipped and listed in :attr:`TrackIndex.skipped` with the reason (FMA's known broken
clips are found this way, not from a list). The classes are the labels that keep at least one
usable track. :func:`index_dataset` picks an indexer by name from :data:`DATASETS`.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from genre_cls.data.index import Track, TrackIndex, audio_problem, index_gtzan
from genre_cls.data.workers import progress_bar
from genre_cls.errors import DataRootError, UserError
from genre_cls.schema import setting

log = logging.getLogger(__name__)

#: The audio files ``data=folders`` reads, in the order copies of one track compete.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")
FOLDERS_LAYOUT = "<root>/<label>/**/<audio file>"
FOLDER_DUPLICATE_RULE = (
    "files that differ only in their extension are copies of one track: the first usable one wins, "
    f"in the order {', '.join(AUDIO_EXTENSIONS)}"
)
#: FMA's audio trees; each holds the tracks of the ones before it (small within medium within large).
FMA_SUBSETS = ("small", "medium", "large", "full")
FMA_SPLITS = {"training": "train", "validation": "val", "test": "test"}
# The (group, column) pairs of tracks.csv that the FMA indexer reads.
FMA_COLUMNS = {
    "subset": ("set", "subset"),
    "split": ("set", "split"),
    "genre": ("track", "genre_top"),
    "artist": ("artist", "id"),
}
# A stratified split puts one track of a class in each of train, val and test from this many on.
MIN_TRACKS_PER_CLASS = 3


def _problems(paths: Sequence[Path], min_seconds: float, progress: bool) -> dict[Path, str | None]:
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


def _existing_root(root: str | os.PathLike, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(f"data root {str(root)!r} does not exist: set data.root to {what}")
    return root


def _log_skipped(skipped: dict[str, str]) -> None:
    for path, why in skipped.items():
        log.warning("skipping %s: %s", path, why)


def _warn_small_classes(tracks: Sequence[Track], classes: Sequence[str], root: Path) -> None:
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
    root = _existing_root(root, what)
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

    for paths in candidates.values():
        paths.sort(key=lambda p: exts.index(p.suffix.lower()))
    problems = _problems([p for ps in candidates.values() for p in ps], min_seconds, progress) if check_files else {}
    chosen: dict[str, Path] = {}
    duplicates: dict[str, str] = {}
    for tid, paths in candidates.items():
        for path in paths:
            if (why := problems.get(path)) is None:
                chosen.setdefault(tid, path)
                if chosen[tid] is not path:
                    duplicates[str(path)] = str(chosen[tid])
            else:
                skipped[str(path)] = why
    _log_skipped(skipped)
    if not chosen:
        raise DataRootError(
            f"none of the {len(skipped)} audio files under {str(root)!r} is usable (see the warnings above): "
            f"expected {what}"
        )
    tracks = [Track(tid, label_of[tid], audio=chosen[tid]) for tid in sorted(chosen)]
    classes = sorted({t.label for t in tracks})
    if empty := [label for label in labels if label not in classes]:
        log.warning("label folders without a usable audio file are not classes: %s", ", ".join(empty))
    _warn_small_classes(tracks, classes, root)
    return TrackIndex(
        root=root, layouts=["folders"], tracks=tracks, skipped=skipped, duplicates=duplicates, classes=classes,
        dataset="folders", extra={"duplicate_rule": FOLDER_DUPLICATE_RULE, "labels_without_tracks": empty},
    )


def _fma_metadata(root: Path, metadata: str | os.PathLike | None) -> Path:
    """The tracks.csv to read: ``metadata`` (the file or its folder), else ``fma_metadata/tracks.csv``
    under ``root`` (or ``tracks.csv`` there)."""
    if metadata is not None:
        path = Path(metadata).expanduser()
        path = path / "tracks.csv" if path.is_dir() else path
        if not path.is_file():
            raise DataRootError(f"FMA metadata {str(path)!r} does not exist: give the tracks.csv of fma_metadata.zip")
        return path
    for path in (root / "fma_metadata" / "tracks.csv", root / "tracks.csv"):
        if path.is_file():
            return path
    raise DataRootError(
        f"no FMA metadata under {str(root)!r}: expected fma_metadata/tracks.csv (unzip fma_metadata.zip there) "
        "or give its path as the metadata option"
    )


def _fma_subset(root: Path, subset: str | None) -> str:
    """The subset whose audio tree is read: ``subset``, or the one ``fma_<subset>/`` folder present."""
    if subset is not None:
        if subset not in FMA_SUBSETS:
            raise UserError(f"unknown FMA subset {subset!r}: choose one of {', '.join(FMA_SUBSETS)}")
        if not (root / f"fma_{subset}").is_dir():
            raise DataRootError(f"no fma_{subset}/ folder under {str(root)!r}: unzip fma_{subset}.zip there")
        return subset
    present = [s for s in FMA_SUBSETS if (root / f"fma_{s}").is_dir()]
    if not present:
        raise DataRootError(
            f"no FMA audio folder under {str(root)!r}: expected {', '.join(f'fma_{s}/' for s in FMA_SUBSETS)} "
            "(000/000123.mp3 inside) beside fma_metadata/"
        )
    if len(present) > 1:
        raise DataRootError(
            f"several FMA audio folders under {str(root)!r} ({', '.join(f'fma_{s}' for s in present)}): "
            f"choose one with the subset option (one of {', '.join(present)})"
        )
    return present[0]


def read_fma_tracks(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of FMA's ``tracks.csv`` that the indexer needs: ``track_id`` and the columns of
    :data:`FMA_COLUMNS`, as strings ("" where empty).

    The file has three header rows: the column groups (``album``, ``artist``, ``set``, ``track``),
    the column names, then ``track_id`` alone; a column is named by its (group, name) pair.
    """
    csv.field_size_limit(2**31 - 1)  # artist biographies run long
    try:
        return _read_fma_rows(path)
    except (UnicodeDecodeError, csv.Error) as exc:  # a damaged or foreign file: say which, not a traceback
        raise DataRootError(
            f"{path} is not FMA's tracks.csv or is damaged ({type(exc).__name__}: {exc}): "
            "unzip fma_metadata.zip again"
        ) from None


def _read_fma_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        try:
            groups, names, index_row = next(rows), next(rows), next(rows)
        except StopIteration:
            raise DataRootError(f"{path} is not FMA's tracks.csv: it has fewer than its three header rows") from None
        pairs = list(zip(groups, names))
        where = {}
        for key, pair in FMA_COLUMNS.items():
            if pair not in pairs:
                raise DataRootError(
                    f"{path} is not FMA's tracks.csv: no {pair[0]}/{pair[1]} column in its header "
                    "(expected the tracks.csv of fma_metadata.zip)"
                )
            where[key] = pairs.index(pair)
        if not index_row or index_row[0] != "track_id":
            raise DataRootError(f"{path} is not FMA's tracks.csv: its third header row does not start with track_id")
        out = []
        for row in rows:
            if not row or not row[0].strip():
                continue
            # An id names its audio file (000123.mp3): anything else is a damaged row.
            if not (row[0].strip().isascii() and row[0].strip().isdigit()):
                raise DataRootError(
                    f"{path} line {rows.line_num}: track id {row[0].strip()[:40]!r} is not a number: "
                    "the file is damaged, unzip fma_metadata.zip again"
                )
            out.append({"track_id": row[0].strip(), **{k: row[i].strip() if i < len(row) else "" for k, i in where.items()}})
    return out


def fma_audio_path(root: str | os.PathLike, subset: str, track_id: int) -> Path:
    """``<root>/fma_<subset>/000/000123.mp3`` for track 123."""
    name = f"{int(track_id):06d}"
    return Path(root) / f"fma_{subset}" / name[:3] / f"{name}.mp3"


def _warn_unlisted(root: Path, subset: str, csv_path: Path, ids: set[int]) -> None:
    """One warning when audio files of ``fma_<subset>/`` are missing from tracks.csv: a truncated or
    older tracks.csv would otherwise leave them out without a word."""
    unlisted = sorted(
        str(path.relative_to(root))
        for path in (root / f"fma_{subset}").glob("[0-9][0-9][0-9]/*.mp3")
        if not (path.stem.isascii() and path.stem.isdigit() and int(path.stem) in ids)
    )
    if unlisted:
        log.warning(
            "%d audio file%s under fma_%s/ %s not listed in %s (e.g. %s) and %s left out: "
            "is that tracks.csv complete and the one of this download?",
            len(unlisted), "s" * (len(unlisted) != 1), subset, "are" if len(unlisted) != 1 else "is",
            csv_path, unlisted[0], "are" if len(unlisted) != 1 else "is",
        )


def index_fma(
    root: str | os.PathLike,
    metadata: str | os.PathLike | None = None,
    subset: str | None = None,
    min_seconds: float = 5.0,
    check_files: bool = True,
    progress: bool = False,
) -> TrackIndex:
    """Index an FMA download: the tracks of one subset, labelled by their top genre.

    Args:
        root: the folder holding ``fma_metadata/`` and one of ``fma_small/``, ``fma_medium/``,
            ``fma_large/``, ``fma_full/``.
        metadata: FMA's ``tracks.csv`` (or its folder) when it is not ``<root>/fma_metadata/``.
        subset: ``small``, ``medium``, ``large`` or ``full``; default: the one audio folder present.
            A subset holds the tracks whose ``set.subset`` is it or a smaller one.
        min_seconds: shorter clips are skipped (FMA's broken clips last 0 to 2 s).
        check_files: open every file to detect unusable ones.
        progress: a progress bar while the files are checked.

    Tracks without a top genre (in ``large``/``full``: those whose genres lie under several
    roots) are left out and counted in the summary's ``without_genre_top``.
    """
    root = _existing_root(root, "an FMA download (fma_metadata/ and fma_small/, fma_medium/ or fma_large/)")
    csv_path = _fma_metadata(root, metadata)
    subset = _fma_subset(root, subset)
    rank = {s: i for i, s in enumerate(FMA_SUBSETS[:3])}
    limit = rank.get(subset, len(rank))  # full: every track

    listed: list[dict[str, str]] = []
    no_genre = 0
    rows = read_fma_tracks(csv_path)
    _warn_unlisted(root, subset, csv_path, {int(row["track_id"]) for row in rows})
    for row in rows:
        if rank.get(row["subset"], len(rank)) > limit:
            continue
        if not row["genre"]:
            no_genre += 1
            continue
        listed.append(row)
    if not listed:
        raise DataRootError(f"{csv_path} lists no track of fma_{subset} with a top genre: is it FMA's tracks.csv?")

    paths = {row["track_id"]: fma_audio_path(root, subset, int(row["track_id"])) for row in listed}
    skipped: dict[str, str] = {}
    present = []
    for tid, path in paths.items():
        if path.is_file():
            present.append(path)
        else:
            skipped[str(path)] = f"listed in {csv_path.name} but missing from fma_{subset}/"
    problems = _problems(present, min_seconds, progress) if check_files else {}
    for path in present:
        if (why := problems.get(path)) is not None:
            skipped[str(path)] = why
    _log_skipped(skipped)
    if no_genre:
        log.info("%d tracks of fma_%s have no top genre and are left out", no_genre, subset)

    tracks = sorted(
        (
            Track(f"{int(row['track_id']):06d}", row["genre"], audio=paths[row["track_id"]],
                  split=FMA_SPLITS.get(row["split"]), artist=row["artist"] or None)
            for row in listed
            if str(paths[row["track_id"]]) not in skipped
        ),
        key=lambda t: t.track_id,
    )
    classes = sorted({t.label for t in tracks})
    _warn_small_classes(tracks, classes, root)
    return TrackIndex(
        root=root, layouts=[f"fma_{subset}"], tracks=tracks, skipped=skipped, classes=classes, dataset="fma",
        extra={
            "subset": subset,
            "metadata": str(csv_path),
            "listed": len(listed),
            "without_genre_top": {
                "tracks": no_genre,
                "why": "FMA gives no top genre to tracks whose genres lie under several roots; they are left out",
            },
        },
    )


@dataclass
class FmaOptions:
    """``data.dataset_options`` of ``data=fma``."""

    __extra__ = "ignore"
    subset: Optional[str] = setting(None, choices=FMA_SUBSETS, hint=" (FMA: null = the audio folder present)")
    metadata: Optional[str] = setting(None, hint=" (FMA: the fma_metadata folder; null = under data.root)")


#: The schema of each data set's options (``data.dataset_options``).
OPTIONS = {"fma": FmaOptions}

#: The indexers by the name a data config gives (``data.dataset``).
DATASETS: dict[str, Callable[..., TrackIndex]] = {"gtzan": index_gtzan, "folders": index_folders, "fma": index_fma}


def index_dataset(name: str, root: str | os.PathLike, **options) -> TrackIndex:
    """Index ``root`` with the indexer :data:`DATASETS` names ``name``, passing ``options``.

    Raises:
        UserError: an unknown dataset name, or an option that dataset does not take (one line each).
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    indexer = DATASETS[name]
    accepted = [p for p in inspect.signature(indexer).parameters if p != "root"]
    if bad := sorted(set(options) - set(accepted)):
        raise UserError(f"dataset {name!r} takes no option {bad[0]!r}: its options are {', '.join(accepted)}")
    return indexer(root, **options)
