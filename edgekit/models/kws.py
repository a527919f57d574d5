"""Keyword-spotting models over (N, 1, frames, n_mfcc) MFCC inputs: a CNN, an RNN and a Transformer.

* ``ds_cnn``: the MLPerf Tiny KWS reference shape (Zhang et al., "Hello Edge", DS-CNN-S): a 10x4
  stride-2 convolution, four depthwise-separable blocks of 64 channels, average pool, a classifier;
  ~24k parameters, ~2.7 M MACs for 49x10 MFCC.
* ``gru_kws``: one GRU over the MFCC frames, its last hidden state classified.
* ``kwt``: a small Keyword Transformer (Berg et al., 2021): each MFCC frame is a token, a class token,
  learned positions, pre-norm encoder blocks. Attention is written with Linear layers and matmuls so
  that both ONNX and TFLite exporters see plain ops.
"""

from __future__ import annotations

import torch
from torch import nn


class DSCNN(nn.Module):
    def __init__(self, num_classes: int = 12, channels: int = 64, blocks: int = 4, in_shape=(49, 10)):
        super().__init__()
        layers = [nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
                  nn.BatchNorm2d(channels), nn.ReLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def ds_cnn(num_classes: int = 12, channels: int = 64, blocks: int = 4) -> nn.Module:
    """DS-CNN (MLPerf Tiny KWS): ``ds_cnn(12)`` has 24k parameters (plus BatchNorm)."""
    if channels < 1 or blocks < 1:
        raise ValueError("channels and blocks must be at least 1")
    return DSCNN(num_classes, channels, blocks)


class GRUKWS(nn.Module):
    def __init__(self, num_classes: int = 12, n_mfcc: int = 10, hidden: int = 64):
        super().__init__()
        self.gru = nn.GRU(n_mfcc, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x):
        seq = x.flatten(1, 2) if x.shape[1] == 1 else x  # (N, 1, T, F) -> (N, T, F)
        # litert-torch's int8 quantizer (_annotate_gru_io_only) annotates the GRU by position: it needs an explicit
        # initial state and both outputs in use. out[:, -1] and hn[0] are the same last hidden state.
        h0 = seq.new_zeros(1, seq.shape[0], self.gru.hidden_size)
        out, hn = self.gru(seq, h0)
        return self.classifier(0.5 * (out[:, -1] + hn[0]))


def gru_kws(num_classes: int = 12, n_mfcc: int = 10, hidden: int = 64) -> nn.Module:
    """A one-layer GRU over MFCC frames; its last hidden state is classified."""
    return GRUKWS(num_classes, n_mfcc, hidden)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.norm2(x))


class KWT(nn.Module):
    def __init__(self, num_classes: int = 12, frames: int = 49, n_mfcc: int = 10, dim: int = 64, depth: int = 2,
                 heads: int = 2, mlp: int = 128):
        super().__init__()
        self.embed = nn.Linear(n_mfcc, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, frames + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[_Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x):
        tok = self.embed(x.flatten(1, 2))  # (N, T, dim): one token per MFCC frame
        tok = torch.cat([self.cls.expand(tok.shape[0], -1, -1), tok], dim=1) + self.pos
        return self.classifier(self.norm(self.blocks(tok))[:, 0])


def kwt(num_classes: int = 12, frames: int = 49, n_mfcc: int = 10, dim: int = 64, depth: int = 2, heads: int = 2,
        mlp: int = 128) -> nn.Module:
    """A small Keyword Transformer: attention over the MFCC frames, a class token read out."""
    if dim % heads:
        raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
    return KWT(num_classes, frames, n_mfcc, dim, depth, heads, mlp)
