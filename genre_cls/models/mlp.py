"""Net1: the multilayer perceptron on 3x180x180 spectrogram images."""

from __future__ import annotations

from torch import nn


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
