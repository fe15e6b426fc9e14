"""Front ends: the first layer of every classifier, turning what the data module serves into
what the network reads. Each input kind names its front end
(:attr:`genre_cls.data.kinds.InputKind.frontend`); the front end is part of the model, so it
runs on the training device and travels in the checkpoint (``predict`` and ``serve`` use the
same one).

* ``scale``: uint8 spectrogram images -> floats in [0, 1] (Net1-Net4).
* ``standardize``: feature sequences standardised with the training split's statistics (Net5).
* ``logmel``: decoded waveforms -> log-mel spectrograms (:class:`genre_cls.models.frontend.LogMel`).

Every front end is built from plain values, ``FRONTENDS[name](**params)``, so a model rebuilt
from its checkpoint's hyperparameters gets the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Scale(nn.Module):
    """uint8 pixels -> float32 in [0, 1]; float input is passed on as float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature (the last axis), with statistics of the training split.

    Args:
        mean, std: one value per feature; ``None``: zeros and ones (set later from the data).
        n_features: their number when ``mean``/``std`` are not given.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, n_features: int = 33) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32) if mean is not None else torch.zeros(n_features)
        std_t = torch.as_tensor(std, dtype=torch.float32) if std is not None else torch.ones(n_features)
        self.register_buffer("feature_mean", mean_t)
        self.register_buffer("feature_std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.feature_mean) / self.feature_std


def _logmel(**params) -> nn.Module:
    from genre_cls.models.frontend import LogMel

    return LogMel(**params)


FRONTENDS = {"scale": Scale, "standardize": Standardize, "logmel": _logmel}
