"""A small classifier on fixed-size embeddings (a frozen network's, computed once and cached):
the head of the transfer models (``model=musicnn_head``).

    Linear(n_features, hidden) -> ReLU -> Dropout -> Linear(hidden, num_classes)

``hidden=0`` makes it one linear layer (logistic regression). The transfer study of issue 27 on
the real GTZAN excerpts found the hidden layer of 256 with dropout 0.5 as accurate as the best
linear head and far less sensitive to how long it trains (README, "Transfer from musicnn").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from genre_cls.schema import setting

__all__ = ["EmbeddingHead", "EmbeddingHeadSettings"]


@dataclass
class EmbeddingHeadSettings:
    """``model.arch_kwargs`` of ``arch: embedding_head`` (the embedding size comes from the input kind)."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"hidden": 16}

    __owner__ = "EmbeddingHead"
    hidden: int = setting(256, ge=0, le=65536, hint=" (0: a linear head)")
    dropout: float = setting(0.5, ge=0.0, lt=1.0)


class EmbeddingHead(nn.Module):
    """(B, n_features) embeddings -> (B, num_classes) logits; see the module docstring."""

    settings = EmbeddingHeadSettings

    def __init__(self, num_classes: int = 10, n_features: int = 1506, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.n_features = int(n_features)
        if hidden:
            self.layers = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        else:
            self.layers = nn.Sequential(nn.Linear(n_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"EmbeddingHead expects (batch, {self.n_features}) embeddings, got {tuple(x.shape)}")
        return self.layers(x)


NETWORKS = {"embedding_head": EmbeddingHead}
