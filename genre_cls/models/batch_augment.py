"""Augmentation that runs on the device, on whole batches, during training only.

* :class:`RandomGain` scales each waveform by a random gain (before the front end).
* :class:`SpecAugment` masks random frequency bands and time spans of each log-mel
  spectrogram (Park et al. 2019), filling them with that spectrogram's mean.
* :func:`mixup` blends a batch with a shuffled copy of itself and returns soft labels
  (Zhang et al. 2018); :func:`soft_cross_entropy` is the loss those labels need.

The modules are the identity in eval mode, so a model that holds them predicts the same
with or without them. Randomness comes from torch's global generator (seeded by
``lightning.seed_everything``) and is drawn on the batch's device. A model config turns them on
in ``model.train_augment`` (:class:`BatchAugmentSettings`); all are off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genre_cls.schema import setting

__all__ = ["BatchAugmentSettings", "RandomGain", "SpecAugment", "mixup", "soft_cross_entropy"]


@dataclass
class BatchAugmentSettings:
    """``model.train_augment``: the augmentation of training batches (the defaults: all off)."""

    __owner__ = "model.train_augment"
    gain_db: float = setting(0.0, ge=0.0, le=40.0)
    freq_masks: int = setting(0, ge=0, le=16)
    freq_width: int = setting(0, ge=0)
    time_masks: int = setting(0, ge=0, le=16)
    time_width: int = setting(0, ge=0)
    mixup_alpha: float = setting(0.0, ge=0.0, le=10.0, hint=" (0: no mixup)")


class RandomGain(nn.Module):
    """Multiply each waveform of a (B, ...) batch by a gain drawn uniformly in [-db, +db] decibels."""

    def __init__(self, db: float = 6.0):
        super().__init__()
        if db < 0:
            raise ValueError(f"the gain range must be non-negative, got {db} dB")
        self.db = float(db)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if not self.training or self.db == 0.0:
            return waveform
        shape = (waveform.shape[0],) + (1,) * (waveform.ndim - 1)
        gain_db = (torch.rand(shape, device=waveform.device) * 2.0 - 1.0) * self.db
        return waveform * torch.pow(10.0, gain_db / 20.0).to(waveform.dtype)

    def extra_repr(self) -> str:
        return f"db={self.db}"


def _spans(batch: int, size: int, count: int, max_width: int, device: torch.device) -> torch.Tensor:
    """(batch, size) bool: per example, the union of ``count`` spans, each of a width drawn
    uniformly in [0, max_width] (at most ``size``) and a start drawn uniformly where it fits."""
    width = torch.randint(0, max_width + 1, (batch, count, 1), device=device).clamp_max(size)
    start = (torch.rand(batch, count, 1, device=device) * (size - width + 1)).long()
    position = torch.arange(size, device=device)
    return ((position >= start) & (position < start + width)).any(dim=1)


class SpecAugment(nn.Module):
    """Per-example frequency and time masks on a (B, C, F, T) log-mel batch.

    Each example gets ``freq_masks`` bands of up to ``freq_width`` mel bins and
    ``time_masks`` spans of up to ``time_width`` frames (widths and positions drawn per
    example, so masks may overlap), set to the mean of that example's spectrogram: in dB a
    zero would be a loud value, the mean is neutral. Identity in eval mode.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 16, time_masks: int = 2, time_width: int = 20):
        super().__init__()
        if min(freq_masks, freq_width, time_masks, time_width) < 0:
            raise ValueError("SpecAugment's mask counts and widths must be non-negative")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spec
        if spec.ndim != 4:
            raise ValueError(f"SpecAugment expects (batch, channels, mels, frames), got shape {tuple(spec.shape)}")
        batch, _, n_freq, n_time = spec.shape
        freq = _spans(batch, n_freq, self.freq_masks, self.freq_width, spec.device)
        time = _spans(batch, n_time, self.time_masks, self.time_width, spec.device)
        masked = freq[:, None, :, None] | time[:, None, None, :]
        return torch.where(masked, spec.mean(dim=(1, 2, 3), keepdim=True), spec)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
                f"time_masks={self.time_masks}, time_width={self.time_width}")


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * x[perm]`` and the matching soft labels, one ``lam`` per batch.

    ``lam ~ Beta(alpha, alpha)`` and ``perm`` is a random permutation of the batch. ``y`` is
    (B,) class indices or (B, num_classes) soft labels. ``alpha <= 0`` returns ``x``
    unchanged and one-hot labels. The soft labels are float32 and sum to 1.
    """
    target = y.float() if y.is_floating_point() else F.one_hot(y, num_classes).float()
    if alpha <= 0:
        return x, target
    lam = float(torch.distributions.Beta(float(alpha), float(alpha)).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1.0 - lam) * x[perm], lam * target + (1.0 - lam) * target[perm]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum(target * log_softmax(logits))``; for one-hot targets it
    equals ``F.cross_entropy`` on their class indices. Computed in float32."""
    return -(target.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
