"""Pruning the gated MLP of token transformers (EVA-02, SwiGLU): ``fc1(x).chunk(2, dim=-1)`` splits a linear
layer's features, and both halves must lose the same positions (with a class token concatenated in front of
the tokens, as in EVA-02, torch-pruning left that split unmapped)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from edgekit.compress.prune import check_pruned, prune_any  # noqa: E402


class GluMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(x * nn.functional.silu(gate))


class TokenNet(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.mlps = nn.ModuleList(GluMlp(dim, 64) for _ in range(depth))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for norm, mlp in zip(self.norms, self.mlps, strict=True):
            x = x + mlp(norm(x))
        return self.head(x[:, 0])


def test_both_halves_of_a_gated_mlp_on_tokens_lose_the_same_positions():
    torch.manual_seed(0)
    model = TokenNet().eval()
    x = torch.randn(1, 3, 16, 16)
    pruned, res, attempts = prune_any(model, x, macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, x, reference=model) == []
    narrowed = 0
    for before, after in zip(model.mlps, pruned.mlps, strict=True):
        hidden = after.fc2.in_features
        assert after.fc1.out_features == 2 * hidden
        narrowed += hidden < 64
        old_bias, new_bias = before.fc1.bias.detach(), after.fc1.bias.detach()
        kept = [int((old_bias[:64] == b).nonzero()[0]) for b in new_bias[:hidden]]
        assert torch.equal(new_bias[hidden:], old_bias[64:][kept])  # the gate half kept the same positions
    assert narrowed
