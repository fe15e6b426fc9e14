"""The conditional GAN of Net6: fully connected generator and discriminator.

Defaults are the paper's waveform sizes (one 66,000-sample segment); the feature-domain
variant passes ``out_dim=16 * 33`` and smaller hidden sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Generator(nn.Module):
    """label embedding (10) ++ noise (100) -> 512 -> 1024 -> 2048 (ReLU) -> Linear ``out_dim``."""

    def __init__(
        self,
        num_classes: int = 10,
        noise_dim: int = 100,
        embed_dim: int = 10,
        hidden: Sequence[int] = (512, 1024, 2048),
        out_dim: int = 66_000,
    ) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.embed = nn.Embedding(num_classes, embed_dim)
        layers: list[nn.Module] = []
        width = noise_dim + embed_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.embed(labels), noise], dim=1))


class Discriminator(nn.Module):
    """sample (``in_dim``) ++ label embedding (10) -> 1024 -> 512 (LeakyReLU 0.2) -> 1 logit."""

    def __init__(
        self,
        num_classes: int = 10,
        in_dim: int = 66_000,
        embed_dim: int = 10,
        hidden: Sequence[int] = (1024, 512),
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        layers: list[nn.Module] = []
        width = in_dim + embed_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), self.embed(labels)], dim=1)).squeeze(1)
