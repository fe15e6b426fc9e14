"""Net5: a 2-layer many-to-one LSTM on (16, 33) audio-feature sequences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from genre_cls.schema import setting


@dataclass
class Net5Settings:
    """``model.arch_kwargs`` of net5 (and net6)."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"hidden": 16}

    __owner__ = "Net5"
    hidden: int = setting(128, ge=1)
    num_layers: int = setting(2, ge=1)
    dropout: float = setting(0.3, ge=0.0, lt=1.0)


class Net5(nn.Module):
    """LSTM(33 -> 128, 2 layers, dropout 0.3) -> last time step -> Linear 10."""

    settings = Net5Settings

    def __init__(
        self,
        num_classes: int = 10,
        n_features: int = 33,
        hidden: int = 128,
        num_layers: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=num_layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):  # x: (batch, frames, features)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


NETWORKS = {"net5": Net5}
