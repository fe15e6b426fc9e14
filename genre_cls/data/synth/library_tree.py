"""A synthetic music library for ``predict inputs=[FOLDER]``: what the tests and ``bench library``
point predict at (:func:`make_library_tree`).

``<root>/Artist NN/Album NN/NN - Track.{mp3,wav}``, ten tracks an album, mp3 and wav in turn,
each album in one GTZAN style (one rendered clip per album, each track a different stretch of
it at its own level); around them what a real library holds: a few broken files (empty, not
audio, a header and noise), questionable tracks that predict flags (silent, a 1 s clip, a WAV
cut short), cover images and notes, hidden files and folders, a linked folder that leads to an
album already there and a link that loops. The hidden manifest (:data:`MANIFEST`) says what a
walk must find and what predict must report.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from genre_cls import GENRES
from genre_cls.data.synth.music import render_clip
from genre_cls.data.synth.trees import MANIFEST, write_audio

#: Tracks per album folder.
ALBUM = 10
#: The questionable tracks, by the flag predict gives them, and the broken files (no record but an error).
FLAGGED = ("silent", "too_short", "length_mismatch")
BROKEN = ("empty", "not_audio", "noise")


def _track(clip: np.ndarray, i: int, samples: int) -> np.ndarray:
    """Track ``i`` of an album: a stretch of the album's clip, at its own level (distinct bytes)."""
    start = (i * 7919) % max(1, len(clip) - samples + 1)
    return (clip[start : start + samples] * (0.5 + 0.05 * (i % 10))).astype(np.float32)


def _truncated_wav(path: Path, y: np.ndarray, sr: int) -> None:
    """A WAV whose header announces ``y`` but whose file holds only its first half (a download cut short)."""
    write_audio(path, y, sr, "wav")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])


def _write_album(job: tuple) -> dict[str, str]:
    """Write one album folder (its tracks, a cover, notes and a .DS_Store); returns its tracks' styles."""
    out, album, first, count, seconds, seed, sr, formats = job
    folder = out / f"Artist {album // 3 + 1:02d}" / f"Album {album + 1:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("ripped from CD\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    style = GENRES[album % len(GENRES)]
    n = int(round(seconds * sr))
    clip = render_clip(style, seed, (album,), seconds + 2.0, sr)
    names = {}
    for number in range(count):
        i = first + number
        ext = formats[i % len(formats)]
        path = folder / f"{number + 1:02d} - Track {i + 1}.{ext}"
        write_audio(path, _track(clip, i, n), sr, ext)
        names[str(path.relative_to(out))] = style
    return names


def make_library_tree(out: str | os.PathLike, tracks: int = 40, seconds: float = 30.0, seed: int = 0, sr: int = 22050,
                      formats: tuple[str, ...] = ("mp3", "wav"), workers: int = 0) -> dict:
    """Write a library of ``tracks`` audio files (mp3 and wav in turn, ``seconds`` long) into
    ``out``, its albums written by ``workers`` processes (0: this one); returns its manifest
    (also written to ``out/`` :data:`MANIFEST`).

    Of the ``tracks`` files a walk finds, three are broken (:data:`BROKEN`: an empty mp3, a text
    file named .wav, a RIFF header and noise) and three are questionable (:data:`FLAGGED`: silence,
    a 1 s clip, a WAV cut to half its header's length); ``tracks`` must be at least 7. Besides them:
    per album a cover image, a notes file and a hidden ``.DS_Store``; a hidden folder with an audio
    file; a linked folder ``Favourites`` that leads to the first album (its files are reached
    twice) and a link from the first artist's folder to itself (a loop).
    """
    from genre_cls.data.processes import process_pool

    if tracks < len(BROKEN) + len(FLAGGED) + 1:
        raise ValueError(f"a library tree needs at least {len(BROKEN) + len(FLAGGED) + 1} tracks, got {tracks}")
    out = Path(out)
    n = int(round(seconds * sr))
    music = tracks - len(BROKEN) - len(FLAGGED)
    albums = math.ceil(music / ALBUM)
    jobs = [(out, a, a * ALBUM, min(ALBUM, music - a * ALBUM), seconds, seed, sr, tuple(formats)) for a in range(albums)]
    names: dict[str, str] = {}
    if workers:
        with process_pool(workers) as pool:
            for written in pool.map(_write_album, jobs):
                names.update(written)
    else:
        for job in jobs:
            names.update(_write_album(job))
    odd = out / "Odd files"
    odd.mkdir(parents=True, exist_ok=True)
    write_audio(odd / "silence.wav", np.zeros(n, dtype=np.float32), sr, "wav")
    write_audio(odd / "one second.wav", render_clip("rock", seed, (999,), 1.0, sr), sr, "wav")
    _truncated_wav(odd / "cut short.wav", render_clip("jazz", seed, (998,), seconds, sr), sr)
    (odd / "empty.mp3").write_bytes(b"")
    (odd / "readme.wav").write_text("this is not audio\n")
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes().replace(b"fmt ", b"fmt\0").replace(b"data", b"dat\0")
    (odd / "noise.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body) + 4) + b"WAVE" + body)
    hidden = out / ".trash"
    hidden.mkdir(exist_ok=True)
    write_audio(hidden / "deleted.wav", render_clip("pop", seed, (997,), 1.0, sr), sr, "wav")
    (out / "Favourites").symlink_to(Path("Artist 01") / "Album 01", target_is_directory=True)
    (out / "Artist 01" / "loop").symlink_to(Path(".."), target_is_directory=True)
    manifest = {
        "tracks": tracks,
        "music": dict(sorted(names.items())),
        "flagged": {"Odd files/silence.wav": "silent", "Odd files/one second.wav": "too_short",
                    "Odd files/cut short.wav": "length_mismatch"},
        "broken": ["Odd files/empty.mp3", "Odd files/readme.wav", "Odd files/noise.wav"],
        # What a walk skips: per album a cover, notes and .DS_Store; the hidden folder and this
        # manifest; the link to an album already read (its files are not reached twice) and the loop.
        "skipped": {"hidden": albums + 2, "not_audio": 2 * albums, "link_loop": 2},
        "seconds": seconds,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest
