"""What the synthetic trees of every data set share: writing a clip in a format, and the hidden
manifest (:data:`MANIFEST`) naming the tracks a tree holds and the files broken on purpose, which
the tests read to know what an indexer must find."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

#: The hidden file (no indexer reads it) a synthetic tree writes: its usable tracks and broken files.
MANIFEST = ".synth_collection.json"
#: soundfile's format (and subtype) per extension written.
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def write_audio(path: Path, y: np.ndarray, sr: int, ext: str) -> None:
    """Write the samples ``y`` at ``sr`` Hz to ``path`` in the format of ``ext`` (:data:`FORMATS`)."""
    fmt, subtype = FORMATS[ext.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, format=fmt, subtype=subtype)
