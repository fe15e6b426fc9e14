"""Tag audio with a pretrained musicnn: a waveform and its sample rate in, 50 tag probabilities
per 3 s patch, their mean over the file, the top tags and each patch's time span out.

The file is cut as musicnn's own ``extractor`` cuts it: resampled to 16 kHz with
``librosa.resample`` (soxr_hq, what ``librosa.load(path, sr=16000)`` does), one log-mel
spectrogram of the whole file, split into consecutive non-overlapping 187-frame patches
(2.992 s). musicnn drops a shorter tail; here a tail of at least half a patch is kept and
padded with silence (as :func:`genre_cls.data.audio.windows` cuts a user's file), and a file
shorter than one patch is one padded patch. On a 30 s clip both cut the same 10 patches, and
the probabilities equal the original's (tests/test_musicnn.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genre_cls.models.musicnn import HOP_LENGTH, PATCH_FRAMES, SAMPLE_RATE
from genre_cls.pretrained import load, pretrained

__all__ = ["PATCH_SECONDS", "TagResult", "Tagger", "logmel_patches", "tag"]

#: The audio one patch covers: 187 frames of 256 samples at 16 kHz.
PATCH_SECONDS = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE


@dataclass
class TagResult:
    """The tags of one file: per patch, and their mean over the file."""

    model: str
    tags: tuple[str, ...]
    #: (patches, tags) sigmoid probabilities, float32.
    patch_probabilities: np.ndarray
    #: (patches, 2) start and end of each patch in seconds of the input (the end is the file's
    #: end for a padded last patch).
    spans: np.ndarray
    #: The input's length in seconds.
    duration_s: float = 0.0

    @property
    def probabilities(self) -> np.ndarray:
        """(tags,) the mean of the patches' probabilities: the file's tags."""
        return self.patch_probabilities.mean(axis=0)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable tags of the file, most probable first, as (name, probability)."""
        probs = self.probabilities
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.tags[i], float(probs[i])) for i in order]

    def as_dict(self, k: int = 5) -> dict:
        """A JSON-ready record (what ``predict pretrained=... format=json`` prints per file): the
        file's ``top`` ``k`` tags, all its ``tags`` by name (in the model's order), and per patch
        its time span, top ``k`` tags and all tags. Probabilities are rounded to 6 decimals."""
        return {
            "model": self.model,
            "duration_s": round(float(self.duration_s), 3),
            "top": [{"tag": name, "probability": round(p, 6)} for name, p in self.top(k)],
            "tags": _named(self.tags, self.probabilities),
            "unit": f"{PATCH_SECONDS:g} s patch",
            "patches": [
                {"patch": i, "start_s": round(float(s), 3), "end_s": round(float(e), 3),
                 "top": [self.tags[j] for j in np.argsort(-row, kind="stable")[:k]], "tags": _named(self.tags, row)}
                for i, ((s, e), row) in enumerate(zip(self.spans, self.patch_probabilities))
            ],
        }


def _named(tags: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return {name: round(float(p), 6) for name, p in zip(tags, probs)}


def logmel_patches(waveform: np.ndarray, sample_rate: int, frontend: nn.Module, device: str | torch.device = "cpu"):
    """A 1-D waveform at ``sample_rate`` -> ((P, 187, 96) log-mel patches on ``device``,
    (P, 2) spans in seconds), cut as the module docstring says. ``frontend`` is a musicnn
    model's :class:`~genre_cls.models.musicnn.MusicnnLogMel`."""
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {y.shape}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not np.all(np.isfinite(y)):
        raise ValueError("the waveform holds NaN or infinite samples")
    if int(sample_rate) != SAMPLE_RATE:
        import librosa

        y = np.ascontiguousarray(librosa.resample(y, orig_sr=int(sample_rate), target_sr=SAMPLE_RATE), dtype=np.float32)
    with torch.no_grad():
        rep = frontend(torch.from_numpy(y).to(device)[None])[0]  # (frames, 96)
    full, rest = divmod(rep.shape[0], PATCH_FRAMES)
    n = max(1, full + (1 if 2 * rest >= PATCH_FRAMES else 0))
    if n * PATCH_FRAMES > rep.shape[0]:  # silence: log10(1 + 0) = 0
        rep = torch.cat([rep, rep.new_zeros(n * PATCH_FRAMES - rep.shape[0], rep.shape[1])])
    duration = len(y) / SAMPLE_RATE
    starts = np.arange(n) * PATCH_SECONDS
    spans = np.stack([starts, np.minimum(starts + PATCH_SECONDS, duration)], axis=1)
    return rep[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, rep.shape[1]), spans


class Tagger:
    """A loaded pretrained model (:func:`genre_cls.pretrained.load`) that tags waveforms.

    Args:
        name: the registry name (``msd``, ``mtt``, ``msd_vgg``, ``mtt_vgg``).
        device: where the front end and the network run.
        batch_size: patches per forward pass (bounds memory on long files).
    """

    def __init__(self, name: str = "msd", device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        self.entry = pretrained(name)
        self.device = torch.device(device)
        self.model = load(name, self.device)
        self.batch_size = int(batch_size)

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> TagResult:
        patches, spans = logmel_patches(waveform, sample_rate, self.model.frontend, self.device)
        with torch.no_grad():
            probs = torch.cat([
                torch.sigmoid(self.model.embeddings(patches[i : i + self.batch_size])["logits"])
                for i in range(0, len(patches), self.batch_size)
            ])
        duration = len(waveform) / int(sample_rate)
        return TagResult(self.entry.name, self.entry.tags, probs.float().cpu().numpy(), spans, duration)


def tag(waveform: np.ndarray, sample_rate: int, name: str = "msd", device: str | torch.device = "cpu") -> TagResult:
    """Tag one waveform with the pretrained model ``name`` (loads it; reuse a :class:`Tagger`
    for many files)."""
    return Tagger(name, device)(waveform, sample_rate)
