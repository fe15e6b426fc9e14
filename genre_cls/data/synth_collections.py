"""Small generated collections for the tests and quick looks: a folder tree and an FMA-shaped tree.

* :func:`make_folder_tree` writes a ``<root>/<label>/**/<file>`` tree (``data=folders``) with 7
  labels whose names hold spaces, commas, dots, ``#``, ``&`` and non-ASCII letters, files in
  several formats with odd names (nested album folders, a name ending in ``#5``, an upper-case
  extension), tracks of different lengths (one longer than 30 s, one of a few seconds), and
  the files a real collection also holds and the indexer must ignore (``cover.jpg``,
  ``.DS_Store``, a hidden folder, a file directly under the root).
* :func:`make_fma_tree` writes ``fma_metadata/tracks.csv`` in FMA's real column layout (its
  three header rows, every column of the original) and ``fma_<subset>/NNN/NNNNNN.mp3`` files,
  with the faults of the real download: an empty file, a clip of 1.5 s, a listed track
  whose file is missing, and tracks of other subsets (one in the audio folder nonetheless).

The audio comes from the synthetic GTZAN's renderer (:func:`genre_cls.data.synth.synth_track`),
each label drawing on one GTZAN genre's style, so the labels are learnable. Both functions are
deterministic in their arguments and write ``.synth_collection.json`` (hidden, so no indexer
reads it) naming the tracks that are usable and the files that are broken on purpose.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from genre_cls import GENRES
from genre_cls.data.synth import synth_track

MANIFEST = ".synth_collection.json"
#: Label folder -> the GTZAN style its tracks are rendered in.
FOLDER_LABELS = {
    "Hip-Hop & Rap": "hiphop",
    "Classique (Baroque, Romantique)": "classical",
    "Électro": "disco",
    "jazz.fusion": "jazz",
    "Rock #1": "rock",
    "Folk, Country": "country",
    "メタル": "metal",
}
#: soundfile's format (and subtype) per extension written.
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}
# Name patterns of the folder tree's files: spaces, commas, dots, '#', non-ASCII, nesting.
_NAMES = (
    "{i:02d} - Song number {i}",
    "Live, at the Café #{i} (encore)",
    "v1.2.{i} final.mix",
    "Album {i} (Disc 1)/{i:02d}. Intro",
    "Symphony #{i}",
    "Deep/er/Nested {i}/track",
    "曲 {i}",
)


def _style(label_style: str) -> str:
    if label_style not in GENRES:
        raise ValueError(f"unknown style {label_style!r}: choose one of {', '.join(GENRES)}")
    return label_style


def _render(style: str, seed: int, key: tuple[int, int], seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng([int(seed), GENRES.index(style), *key])
    y = synth_track(style, rng, seconds, sr)
    if channels == 2:  # a slightly different right channel, as a stereo mix has
        y = np.stack([y, 0.8 * y + 0.05 * np.roll(y, 7)], axis=1)
    return y


def _write(path: Path, y: np.ndarray, sr: int, ext: str) -> None:
    fmt, subtype = FORMATS[ext.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, format=fmt, subtype=subtype)


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
        _style(style)
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
            _write(out / f"{rel}.{ext_written}", _render(style, seed, (li, i), length, sr), sr, "mp3")
            tracks[rel] = {"label": label, "seconds": length, "file": f"{rel}.{ext_written}"}
        # What a real collection holds besides audio: none of it is a track.
        (out / label / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        (out / label / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    hidden = out / ".trash" / "old"
    hidden.mkdir(parents=True, exist_ok=True)
    _write(hidden / "deleted.wav", _render("rock", seed, (99, 0), 2.0, sr), sr, "wav")
    _write(out / "unsorted.wav", _render("pop", seed, (99, 1), 2.0, sr), sr, "wav")
    (out / MANIFEST).write_text(json.dumps({"dataset": "folders", "tracks": tracks}, ensure_ascii=False, indent=1))
    return out


# --------------------------------------------------------------------------------------------
# FMA
# --------------------------------------------------------------------------------------------
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
            y = _render(style, seed, (gi, i), seconds, sr, channels=2)
            _write(path_of(tid), y, sr, "mp3")
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
    _write(path_of(short), _render(style, seed, (98, 0), 1.5, sr, channels=2), sr, "mp3")
    broken[f"{short:06d}"] = "too short"
    rows.append(_fma_row(missing, names[0], FMA_GENRES[names[0]][0], "training", subset, 92, seconds))
    broken[f"{missing:06d}"] = "missing"
    if subset in ("small", "medium"):
        other = "large" if subset == "medium" else "medium"
        rows.append(_fma_row(larger, names[0], FMA_GENRES[names[0]][0], "training", other, 93, seconds))
        _write(path_of(larger), _render(style, seed, (98, 1), seconds, sr, channels=2), sr, "mp3")
    rows.append(_fma_row(no_top, "", None, "training", "large", 94, seconds))
    if subset in ("large", "full"):
        _write(path_of(no_top), _render(style, seed, (98, 2), seconds, sr, channels=2), sr, "mp3")

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
