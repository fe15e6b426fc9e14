"""The front ends that only rescale their input. A front end is the first layer of a classifier, turning what the data
module serves into what the network reads; a model config names it (``model.frontend``, by
default its input kind's, :attr:`genre_cls.data.kinds.base.InputKind.frontend`). It is part of the
model, so it runs on the training device and travels in the checkpoint (``predict`` and
``serve`` use the same one).

* ``scale``: uint8 spectrogram images -> floats in [0, 1] (Net1-Net4).
* ``standardize``: feature sequences standardised with the training split's statistics (Net5).
* ``logmel``: decoded waveforms -> log-mel spectrograms (:class:`genre_cls.models.logmel.LogMel`).

Every front end is built from plain values, ``frontend(name)(**params)``
(:func:`genre_cls.models.frontend`), so a model rebuilt from its checkpoint's hyperparameters
gets the same one. A front end with settings of its own names their schema in ``settings``
(they live in the model config under ``model.input.<name>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Scale(nn.Module):
    """uint8 pixels -> float32 in [0, 1]; float input is passed on as float32."""

    settings = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature (the last axis), with statistics of the training split.

    Args:
        mean, std: one value per feature; ``None``: zeros and ones (set later from the data).
        n_features: their number when ``mean``/``std`` are not given.
    """

    settings = None

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, n_features: int = 33) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32) if mean is not None else torch.zeros(n_features)
        std_t = torch.as_tensor(std, dtype=torch.float32) if std is not None else torch.ones(n_features)
        self.register_buffer("feature_mean", mean_t)
        self.register_buffer("feature_std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.feature_mean) / self.feature_std


FRONTENDS = {"scale": Scale, "standardize": Standardize}
