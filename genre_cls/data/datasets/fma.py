"""The Free Music Archive (``data=fma``; Defferrard et al. 2017): the metadata
``fma_metadata/tracks.csv`` and one audio tree ``fma_small``, ``fma_medium``, ``fma_large`` or
``fma_full`` (``000/000123.mp3``). Label = the track's top genre, predefined part = its official
split, artist = its artist id, track id = the six-digit id.

Every file is looked at: one that is missing, empty, cannot be decoded or is too short is
skipped and listed in :attr:`TrackIndex.skipped` with the reason (FMA's known broken clips are
found this way, not from a list). :func:`make_fma_tree` writes a small FMA-shaped download with
the real download's faults.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genre_cls.data.datasets import Dataset
from genre_cls.data.synth import render_clip
from genre_cls.data.synth.trees import MANIFEST, write_audio
from genre_cls.data.tracks import (
    Track, TrackIndex, existing_root, file_problems, log_skipped, same_files, warn_small_classes,
)
from genre_cls.errors import DataRootError, UserError
from genre_cls.schema import setting

log = logging.getLogger(__name__)

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


@dataclass
class FmaOptions:
    """``data.dataset_options`` of ``data=fma``."""

    __extra__ = "ignore"
    subset: Optional[str] = setting(None, choices=FMA_SUBSETS, hint=" (FMA: null = the audio folder present)")
    metadata: Optional[str] = setting(None, hint=" (FMA: the fma_metadata folder; null = under data.root)")



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
        end = rows.line_num
        for row in rows:
            line, end = end + 1, rows.line_num  # the row's first line: a quoted field may span several
            if not row or not row[0].strip():
                continue
            # An id names its audio file (000123.mp3): anything else is a damaged row.
            if not (row[0].strip().isascii() and row[0].strip().isdigit()):
                raise DataRootError(
                    f"{path} line {line}: track id {row[0].strip()[:40]!r} is not a number: "
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
    root = existing_root(root, "an FMA download (fma_metadata/ and fma_small/, fma_medium/ or fma_large/)")
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
    # One file is one track: an id whose file is a link to (or a hard link of) another id's is not read again.
    same = same_files(present, root)
    duplicates = {str(path): str(kept) for path, kept in same.items()}
    present = [path for path in present if path not in same]
    problems = file_problems(present, min_seconds, progress) if check_files else {}
    for path in present:
        if (why := problems.get(path)) is not None:
            skipped[str(path)] = why
    log_skipped(skipped)
    if no_genre:
        log.info("%d tracks of fma_%s have no top genre and are left out", no_genre, subset)

    tracks = sorted(
        (
            Track(f"{int(row['track_id']):06d}", row["genre"], audio=paths[row["track_id"]],
                  split=FMA_SPLITS.get(row["split"]), artist=row["artist"] or None)
            for row in listed
            if str(paths[row["track_id"]]) not in skipped and paths[row["track_id"]] not in same
        ),
        key=lambda t: t.track_id,
    )
    classes = sorted({t.label for t in tracks})
    warn_small_classes(tracks, classes, root)
    return TrackIndex(
        root=root, layouts=[f"fma_{subset}"], tracks=tracks, skipped=skipped, duplicates=duplicates, classes=classes, dataset="fma",
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



# --------------------------------------------------------------------------- a synthetic download


#: The column groups and names of FMA's tracks.csv, in its order (fma_metadata.zip, 2017).
FMA_HEADER = (
    [("album", c) for c in ("comments", "date_created", "date_released", "engineer", "favorites", "id",
                            "information", "listens", "producer", "tags", "title", "tracks", "type")]
    + [("artist", c) for c in ("active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
                               "date_created", "favorites", "id", "latitude", "location", "longitude", "members",
                               "name", "related_projects", "tags", "website", "wikipedia_page")]
    + [("set", c) for c in ("split", "subset")]
    + [("track", c) for c in ("bit_rate", "comments", "composer", "date_created", "date_recorded", "duration",
                              "favorites", "genre_top", "genres", "genres_all", "information", "interest",
                              "language_code", "license", "listens", "lyricist", "number", "publisher", "tags",
                              "title")]
)
#: fma_small's eight top genres (FMA genre id, GTZAN style rendered).
FMA_GENRES = {
    "Electronic": (15, "disco"),
    "Experimental": (38, "classical"),
    "Folk": (17, "country"),
    "Hip-Hop": (21, "hiphop"),
    "Instrumental": (1235, "jazz"),
    "International": (2, "reggae"),
    "Pop": (10, "pop"),
    "Rock": (12, "rock"),
}
_SPLIT_OF = ("test", "validation")  # track 0 of a genre is test, track 1 validation, the rest training


def _fma_row(tid: int, genre: str, gid: int | None, split: str, subset: str, artist: int, seconds: float) -> list[str]:
    values = {
        ("album", "id"): str(1000 + artist), ("album", "title"): f"Album of artist {artist}",
        ("album", "tracks"): "8", ("album", "type"): "Album", ("album", "date_created"): "2008-11-26 01:44:45",
        ("album", "listens"): "6073", ("album", "comments"): "0", ("album", "favorites"): "4",
        ("artist", "id"): str(artist), ("artist", "name"): f"Artist {artist}, the band",
        ("artist", "bio"): f"<p>Formed in 2004.\nPlays {genre}, mostly \"live\".</p>",  # quoted, with a newline
        ("artist", "location"): "Zürich", ("artist", "latitude"): "47.37", ("artist", "longitude"): "8.54",
        ("artist", "tags"): "[]", ("artist", "favorites"): "9", ("artist", "comments"): "0",
        ("artist", "date_created"): "2008-11-26 01:42:32",
        ("set", "split"): split, ("set", "subset"): subset,
        ("track", "bit_rate"): "256000", ("track", "duration"): str(int(round(seconds))),
        ("track", "genre_top"): genre, ("track", "genres"): f"[{gid}]" if gid else "[21, 38]",
        ("track", "genres_all"): f"[{gid}]" if gid else "[21, 38]", ("track", "interest"): "4656",
        ("track", "license"): "Attribution-NonCommercial-ShareAlike 3.0 International", ("track", "listens"): "1293",
        ("track", "number"): "3", ("track", "tags"): "[]", ("track", "title"): f"Track {tid}, take 2",
        ("track", "date_created"): "2008-11-26 01:48:12", ("track", "favorites"): "2", ("track", "comments"): "0",
    }
    return [str(tid)] + [values.get(col, "") for col in FMA_HEADER]


def make_fma_tree(
    out: str | os.PathLike,
    subset: str = "small",
    tracks_per_genre: int = 4,
    seconds: float = 6.0,
    genres: tuple[str, ...] | None = None,
    seed: int = 0,
    sr: int = 44100,
) -> Path:
    """Write an FMA-shaped download into ``out`` and return ``out``.

    ``out/fma_metadata/tracks.csv`` lists every track in FMA's column layout; the audio of
    ``subset`` lies in ``out/fma_<subset>/NNN/NNNNNN.mp3`` (MP3, stereo, ``sr`` Hz, like FMA's
    files; the genres are :data:`FMA_GENRES`, fma_small's eight, or ``genres``). Tracks ``0`` and
    ``1`` of each genre are in the official test and validation parts, the rest in training;
    each genre's parts have their own artists, as in FMA's artist-filtered split.

    Broken on purpose, like the real download's few bad clips: one empty file, one clip of 1.5
    s, one listed track without a file. Listed but not in ``subset``: one track of a
    larger subset (its file is written into the audio folder all the same, to show that the
    metadata decides) and one track without a top genre (subset ``large``).
    """
    out = Path(out)
    if subset not in ("small", "medium", "large", "full"):
        raise ValueError(f"unknown FMA subset {subset!r}")
    if tracks_per_genre < 3:
        raise ValueError("make_fma_tree needs at least 3 tracks per genre (one per official part)")
    names = tuple(FMA_GENRES) if genres is None else tuple(genres)
    if bad := [g for g in names if g not in FMA_GENRES]:
        raise ValueError(f"unknown FMA genre {bad[0]!r}: choose from {', '.join(FMA_GENRES)}")
    audio = out / f"fma_{subset}"
    rows, usable, broken = [], {}, {}

    def path_of(tid: int) -> Path:
        name = f"{tid:06d}"
        return audio / name[:3] / f"{name}.mp3"

    tid = 2  # FMA's first track id
    for gi, genre in enumerate(names):
        gid, style = FMA_GENRES[genre]
        for i in range(tracks_per_genre):
            split = _SPLIT_OF[i] if i < len(_SPLIT_OF) else "training"
            artist = 10 * gi + min(i, 2)
            rows.append(_fma_row(tid, genre, gid, split, subset, artist, seconds))
            y = render_clip(style, seed, (gi, i), seconds, sr, channels=2)
            write_audio(path_of(tid), y, sr, "mp3")
            usable[f"{tid:06d}"] = {"label": genre, "split": {"training": "train", "validation": "val"}.get(split, split)}
            tid += 137  # ids spread over several NNN/ folders, as in FMA
    style = FMA_GENRES[names[0]][1]
    # The faults of the real download.
    empty, short, missing, larger, no_top = tid, tid + 1, tid + 2, tid + 3, tid + 4
    rows.append(_fma_row(empty, names[0], FMA_GENRES[names[0]][0], "training", subset, 90, seconds))
    path_of(empty).parent.mkdir(parents=True, exist_ok=True)
    path_of(empty).write_bytes(b"")
    broken[f"{empty:06d}"] = "empty"
    rows.append(_fma_row(short, names[0], FMA_GENRES[names[0]][0], "training", subset, 91, 1.5))
    write_audio(path_of(short), render_clip(style, seed, (98, 0), 1.5, sr, channels=2), sr, "mp3")
    broken[f"{short:06d}"] = "too short"
    rows.append(_fma_row(missing, names[0], FMA_GENRES[names[0]][0], "training", subset, 92, seconds))
    broken[f"{missing:06d}"] = "missing"
    if subset in ("small", "medium"):
        other = "large" if subset == "medium" else "medium"
        rows.append(_fma_row(larger, names[0], FMA_GENRES[names[0]][0], "training", other, 93, seconds))
        write_audio(path_of(larger), render_clip(style, seed, (98, 1), seconds, sr, channels=2), sr, "mp3")
    rows.append(_fma_row(no_top, "", None, "training", "large", 94, seconds))
    if subset in ("large", "full"):
        write_audio(path_of(no_top), render_clip(style, seed, (98, 2), seconds, sr, channels=2), sr, "mp3")

    meta = out / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / "tracks.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([""] + [g for g, _ in FMA_HEADER])
        writer.writerow([""] + [c for _, c in FMA_HEADER])
        writer.writerow(["track_id"] + [""] * len(FMA_HEADER))
        writer.writerows(rows)
    manifest = {"dataset": "fma", "subset": subset, "tracks": usable, "broken": broken,
                "other_subset": f"{larger:06d}", "without_genre_top": f"{no_top:06d}"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def write_synthetic(out: Path, tracks_per_label: int = 3, seconds: float = 6.0, seed: int = 0) -> Path:
    """A synthetic FMA download in ``out`` (:func:`make_fma_tree`, fma_small's eight genres at 22,050 Hz)."""
    return make_fma_tree(out, tracks_per_genre=max(3, tracks_per_label), seconds=seconds, seed=seed, sr=22050)


DATASET = Dataset("fma", "FMA (fma_metadata/tracks.csv and fma_small/, fma_medium/ or fma_large/)", index_fma,
                  write_synthetic, options=FmaOptions)
