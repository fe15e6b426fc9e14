"""Net1: the multilayer perceptron on 3x180x180 spectrogram images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from genre_cls.schema import setting


@dataclass
class Net1Settings:
    """``model.arch_kwargs`` of net1."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"hidden": 16}

    __owner__ = "Net1"
    hidden: int = setting(512, ge=1)


class Net1(nn.Sequential):
    """Flatten -> Linear 512 + ReLU -> Linear 512 + ReLU -> Linear ``num_classes``."""

    def __init__(self, num_classes: int = 10, image_size: int = 180, hidden: int = 512) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(3 * image_size * image_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    settings = Net1Settings


NETWORKS = {"net1": Net1}
