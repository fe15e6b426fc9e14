"""Net2 (CNN) and Net3 (the same CNN with BatchNorm after every convolution)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from genre_cls.schema import setting


@dataclass
class CNNSettings:
    """``model.arch_kwargs`` of net2, net3 (and net4)."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"hidden": 16}

    __owner__ = "Net2 and Net3"
    hidden: int = setting(256, ge=1)


def _conv(cin: int, cout: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return layers


class Net2(nn.Module):
    """Conv 3->32, 32->32, pool, 32->64, 64->128, pool (3x3, ReLU) -> Linear 256 -> Linear 10.

    With a 180x180 input the flattened feature map has 128 * 45 * 45 = 259,200 values.
    """

    batch_norm = False
    settings = CNNSettings

    def __init__(self, num_classes: int = 10, image_size: int = 180, hidden: int = 256) -> None:
        super().__init__()
        bn = self.batch_norm
        self.features = nn.Sequential(
            *_conv(3, 32, bn),
            *_conv(32, 32, bn),
            nn.MaxPool2d(2),
            *_conv(32, 64, bn),
            *_conv(64, 128, bn),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class Net3(Net2):
    """Net2 with ``BatchNorm2d`` after every convolution (Net4 is Net3 trained with RMSprop)."""

    batch_norm = True


NETWORKS = {"net2": Net2, "net3": Net3}
