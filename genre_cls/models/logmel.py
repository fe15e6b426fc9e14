"""The log-mel front end as a module: waveforms in, log-mel spectrograms in dB out.

It lives inside the model, so it runs on whatever device the model is on, its parameters
travel in the checkpoint, and train, predict and serve compute the same features.

Its output equals ``librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sample_rate,
n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax, power=power,
center=center, pad_mode="constant"), ref=1.0, amin=1e-10, top_db=top_db)`` per example
(librosa 0.11's defaults: a periodic Hann window, zero padding when centred, Slaney mel
filters), in float32 on the CPU, to within 5e-4 dB for every bin within 60 dB of the
example's peak and 5e-3 dB everywhere (tests/test_logmel.py). The largest differences are
float32 rounding of the STFT in bins 70-80 dB below a pure tone's peak; librosa's float32
path computes in float64. The STFT and the dB conversion always run in float32, also under
autocast: half precision would cost whole decibels at the quiet end of the 80 dB range.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from genre_cls.schema import setting

__all__ = ["LogMel", "LogMelSettings"]

#: The smallest power ``power_to_db`` takes the log of (librosa's default ``amin``).
AMIN = 1e-10


@dataclass
class LogMelSettings:
    """``model.input.logmel``: the front end's settings (its sample rate is ``model.input.sample_rate``)."""

    __owner__ = "LogMel"
    n_fft: int = setting(1024, ge=16, le=16384)
    hop_length: int = setting(512, ge=1, le=16384)
    n_mels: int = setting(128, ge=8, le=512)
    fmin: float = setting(0.0, ge=0.0)
    fmax: Optional[float] = setting(None, gt=0.0)
    power: float = setting(2.0, gt=0.0)
    top_db: Optional[float] = setting(80.0, gt=0.0)
    center: bool = setting(True)


def full_precision(device: str):
    """A context with autocast off on ``device``; on a device autocast does not know (the meta
    device of the memory check) there is nothing to turn off."""
    return torch.autocast(device_type=device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext()


class LogMel(nn.Module):
    """(B, T) float waveforms -> (B, 1, n_mels, frames) float32 log-mel power in dB.

    ``top_db`` clips each example (not the batch) to ``top_db`` below its own maximum, as
    ``power_to_db`` does on one track; ``None`` does not clip. The mel filter bank is
    ``librosa.filters.mel`` computed once here and kept as a buffer (in the state dict, so a
    checkpoint does not depend on the librosa version that loads it).
    """

    settings = LogMelSettings

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        power: float = 2.0,
        top_db: float | None = 80.0,
        center: bool = True,
    ):
        super().__init__()
        import librosa

        if top_db is not None and top_db < 0:
            raise ValueError(f"top_db must be non-negative or None, got {top_db}")
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.n_mels, self.fmin, self.fmax = int(n_mels), float(fmin), fmax
        self.power, self.top_db, self.center = float(power), top_db, bool(center)
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32)
        self.register_buffer("mel_basis", torch.from_numpy(mel))  # (n_mels, n_fft // 2 + 1)
        # librosa's get_window("hann", n_fft, fftbins=True) is the periodic Hann window in float64;
        # rounding that (rather than computing it in float32) keeps the quiet bins closer to librosa.
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)

    def net_params(self) -> dict[str, int]:
        """What a network reading this front end's output must know of it: its mel bins."""
        return {"n_mels": self.n_mels}

    def frames(self, n_samples: int) -> int:
        """The number of frames the output has for waveforms of ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        if n_samples < self.n_fft:
            raise ValueError(f"{n_samples} samples are fewer than n_fft={self.n_fft} (center=False)")
        return 1 + (n_samples - self.n_fft) // self.hop_length

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, T) waveforms -> (B, n_mels, frames) float32 mel spectrogram before the log:
        ``librosa.feature.melspectrogram`` with this module's parameters (float32, autocast off).
        Front ends that compress differently (musicnn's ``log10(1 + 10000 x)``) start from it."""
        if waveform.ndim != 2:
            raise ValueError(f"LogMel expects (batch, samples) waveforms, got shape {tuple(waveform.shape)}")
        with full_precision(waveform.device.type):
            spec = torch.stft(
                waveform.float(), n_fft=self.n_fft, hop_length=self.hop_length, window=self.window.float(),
                center=self.center, pad_mode="constant", return_complex=True,
            )
            magnitude = spec.abs()
            power = magnitude.square() if self.power == 2.0 else magnitude.pow(self.power)
            return torch.matmul(self.mel_basis.float(), power)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel_power(waveform)
        with full_precision(waveform.device.type):
            db = 10.0 * torch.log10(mel.clamp_min(AMIN))
            if self.top_db is not None:
                floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
                db = torch.maximum(db, floor)
        return db.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, n_mels={self.n_mels}, "
                f"fmin={self.fmin}, fmax={self.fmax}, power={self.power}, top_db={self.top_db}, center={self.center}")


FRONTENDS = {"logmel": LogMel}
