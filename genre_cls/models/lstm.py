"""Net5: a 2-layer many-to-one LSTM on (16, 33) audio-feature sequences."""

from __future__ import annotations

from torch import nn


class Net5(nn.Module):
    """LSTM(33 -> 128, 2 layers, dropout 0.3) -> last time step -> Linear 10."""

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
