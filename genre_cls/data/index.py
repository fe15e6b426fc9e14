"""Find every GTZAN track under a data root and detect unusable files by looking at them.

Two layouts are recognised, possibly side by side and possibly under a ``Data/`` folder:

* Kaggle: ``genres_original/<g>/<g>.000NN.wav`` and ``images_original/<g>/<g>000NN.png``;
* original (marsyas / torchaudio): ``genres/<g>/<g>.000NN.au`` (or ``.wav``).

The track id (``jazz.00054``) joins audio and image files. A file that cannot be decoded,
is far too short or is not an image is skipped, named in one warning and recorded in
:attr:`GTZANIndex.skipped`; nothing is excluded by name.
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
}
AUDIO_RE = re.compile(r"^([a-z]+)\.(\d{5})\.(wav|au)$", re.IGNORECASE)
IMAGE_RE = re.compile(r"^([a-z]+)\.?(\d{5})\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Track:
    """One GTZAN clip: its id, genre and the usable files that belong to it."""

    track_id: str
    genre: str
    audio: Path | None = None
    image: Path | None = None


@dataclass
class GTZANIndex:
    """The usable tracks under ``root`` (sorted by id) and the files that were skipped."""

    root: Path
    layouts: list[str]
    tracks: list[Track]
    skipped: dict[str, str] = field(default_factory=dict)

    def with_audio(self) -> list[Track]:
        return [t for t in self.tracks if t.audio is not None]

    def with_images(self) -> list[Track]:
        return [t for t in self.tracks if t.image is not None]

    def summary(self) -> dict:
        """A JSON-ready description: counts per genre and modality, skipped files and why."""
        per_genre = {g: sum(t.genre == g for t in self.tracks) for g in GENRES}
        return {
            "root": str(self.root),
            "layouts": self.layouts,
            "tracks": len(self.tracks),
            "tracks_with_audio": len(self.with_audio()),
            "tracks_with_images": len(self.with_images()),
            "tracks_per_genre": per_genre,
            "skipped": dict(self.skipped),
        }


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
    return [b for b in (root, root / "Data", root / "data") if b.is_dir()]


def _scan(folder: Path, pattern: re.Pattern, exts: tuple[str, ...]) -> dict[str, Path]:
    """Map track id -> file for ``<folder>/<genre>/<file>`` entries whose genre is a GTZAN genre."""
    found: dict[str, Path] = {}
    for genre in GENRES:
        gdir = folder / genre
        if not gdir.is_dir():
            continue
        for path in sorted(gdir.iterdir()):
            m = pattern.match(path.name)
            if m and path.suffix.lower() in exts and m.group(1).lower() == genre:
                found.setdefault(f"{genre}.{m.group(2)}", path)
    return found


def index_gtzan(root: str | Path, min_seconds: float = 10.0, check_files: bool = True) -> GTZANIndex:
    """Index the GTZAN tree under ``root``.

    Args:
        root: a folder holding a Kaggle and/or marsyas layout (directly or under ``Data/``).
        min_seconds: audio shorter than this is "far too short" for a 30 s clip and skipped.
        check_files: open every file to detect corrupt ones (disable only for trusted trees).

    Raises:
        DataRootError: ``root`` does not exist or holds no known layout.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError(
            f"data root {str(root)!r} does not exist: set data.root to a GTZAN download "
            f"(layouts: {'; '.join(LAYOUTS.values())}) or to null for the synthetic set"
        )
    audio: dict[str, Path] = {}
    images: dict[str, Path] = {}
    layouts: list[str] = []
    for base in _bases(root):
        found_audio = _scan(base / "genres_original", AUDIO_RE, (".wav", ".au"))
        found_images = _scan(base / "images_original", IMAGE_RE, (".png",))
        if found_audio or found_images:
            layouts.append("kaggle")
        marsyas = _scan(base / "genres", AUDIO_RE, (".au", ".wav"))
        if marsyas:
            layouts.append("marsyas")
        for found, into in ((found_audio, audio), (marsyas, audio), (found_images, images)):
            for tid, path in found.items():
                into.setdefault(tid, path)
    if not audio and not images:
        raise DataRootError(
            f"no GTZAN tracks under {str(root)!r}: looked for {LAYOUTS['kaggle']} and "
            f"{LAYOUTS['marsyas']} (also under Data/); point data.root at the folder that holds them"
        )

    skipped: dict[str, str] = {}
    if check_files:
        for tid, path in list(audio.items()):
            if (why := audio_problem(path, min_seconds)) is not None:
                skipped[str(path)] = why
                del audio[tid]
        for tid, path in list(images.items()):
            if (why := image_problem(path)) is not None:
                skipped[str(path)] = why
                del images[tid]
    for path, why in skipped.items():
        log.warning("skipping %s: %s", path, why)

    tracks = [
        Track(tid, genre_of(tid), audio.get(tid), images.get(tid))
        for tid in sorted(set(audio) | set(images))
    ]
    warn_missing_genres(root, tracks)
    return GTZANIndex(root=root, layouts=sorted(set(layouts)), tracks=tracks, skipped=skipped)


def missing_genres(tracks: list[Track]) -> list[str]:
    """The GTZAN genres without a single usable track."""
    present = {t.genre for t in tracks}
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
