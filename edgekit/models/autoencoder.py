"""The fully-connected autoencoder of the MLPerf Tiny anomaly-detection benchmark (DCASE 2020 task 2 baseline).

640 inputs (5 log-mel frames of 128 bands) -> four 128-unit layers -> an 8-unit bottleneck -> four
128-unit layers -> 640 outputs; every hidden layer is Linear + BatchNorm + ReLU. It learns to
reconstruct the frames of normal machines; the anomaly score of a clip is its mean squared
reconstruction error (edgekit.anomaly).
"""

from __future__ import annotations

import torch
from torch import nn


def _dense(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU()]


class FCAutoencoder(nn.Module):
    def __init__(self, input_dim: int = 640, hidden: int = 128, bottleneck: int = 8, depth: int = 4):
        super().__init__()
        enc: list[nn.Module] = []
        c = input_dim
        for _ in range(depth):
            enc += _dense(c, hidden)
            c = hidden
        enc += _dense(hidden, bottleneck)
        dec: list[nn.Module] = []
        c = bottleneck
        for _ in range(depth):
            dec += _dense(c, hidden)
            c = hidden
        dec.append(nn.Linear(hidden, input_dim))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def fc_autoencoder(input_dim: int = 640, hidden: int = 128, bottleneck: int = 8, depth: int = 4):
    """Factory registered as ``fc_autoencoder`` (defaults: the MLPerf Tiny reference, 270k parameters)."""
    return FCAutoencoder(input_dim, hidden, bottleneck, depth)
