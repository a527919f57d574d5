"""Pruning Swin-style nets: per-head parameters lose whole heads, patch merging loses the same channels in each
of its four parts, and a head count never runs ahead of the layers it counts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from edgekit.compress.prune import check_pruned, load_pruned, prune_any, save_pruned  # noqa: E402


class BiasedWindowAttention(nn.Module):
    """Attention with a learned bias per head added to its scores, read through an index as Swin's
    ``relative_position_bias_table`` (one column per head) is."""

    def __init__(self, dim: int, num_heads: int, tokens: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.randn(2 * tokens - 1, num_heads))
        grid = torch.arange(tokens)
        self.register_buffer("index", (grid[:, None] - grid[None, :] + tokens - 1).flatten(), persistent=False)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        attn = attn + self.bias_table[self.index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))


class PatchMerging(nn.Module):
    """Swin's: each 2x2 neighbourhood of a channels-last map becomes one position with 4C channels, C fastest."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), BiasedWindowAttention(dim, heads, tokens)
        self.n2, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        b, h, w, c = x.shape
        t = x.reshape(b, h * w, c)
        t = t + self.attn(self.n1(t))
        t = t + self.fc2(torch.relu(self.fc1(self.n2(t))))
        return t.reshape(b, h, w, c)


class SwinLike(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 2, 2)
        self.stage1 = Block(dim, 4, 64)
        self.merge = PatchMerging(dim)
        self.stage2 = Block(2 * dim, 8, 16)
        self.head = nn.Linear(2 * dim, 10)
        for m in self.modules():  # distinct norm weights, so that each channel can be followed through pruning
            if isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight)

    def forward(self, x):
        x = self.patch(x).permute(0, 2, 3, 1)
        x = self.stage2(self.merge(self.stage1(x)))
        return self.head(x.mean((1, 2)))


def example():
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def pruned_swin(macs_ratio: float = 0.6):
    torch.manual_seed(0)
    model = SwinLike().eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=macs_ratio, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert res.strategy.startswith("all layers"), res.strategy
    return model, pruned, res


def test_a_per_head_bias_table_loses_the_columns_of_the_heads_removed_and_nothing_else():
    model, pruned, res = pruned_swin()
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    removed = 0
    for name in ("stage1", "stage2"):
        before, after = getattr(model, name).attn, getattr(pruned, name).attn
        assert after.bias_table.shape[1] == after.num_heads == after.qkv.out_features // (3 * 8)
        kept = [h for h in range(before.num_heads)
                if any(torch.equal(before.bias_table[:, h], after.bias_table[:, j]) for j in range(after.num_heads))]
        assert len(kept) == after.num_heads  # every column left is one head's own, whole
        removed += before.num_heads - after.num_heads
    assert removed > 0


def test_patch_merging_loses_the_same_channels_in_each_of_its_four_parts():
    model, pruned, _ = pruned_swin()
    c = pruned.patch.out_channels
    assert c < model.patch.out_channels and pruned.merge.norm.normalized_shape == (4 * c,)
    parts = model.merge.norm.weight.detach().view(4, -1)
    for j in range(c):  # channel j of each part after pruning is the same original channel in each part
        columns = [i for i in range(parts.shape[1]) if torch.equal(parts[:, i],
                                                                    pruned.merge.norm.weight.detach().view(4, -1)[:, j])]
        assert len(columns) == 1


def test_a_pruned_swin_like_net_is_rebuilt_exactly_from_what_was_saved(tmp_path):
    model, pruned, _ = pruned_swin()
    save_pruned(tmp_path / "p.pt", pruned, model)
    torch.manual_seed(1)
    rebuilt = load_pruned(SwinLike().eval(), tmp_path / "p.pt")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), pruned(x), atol=1e-6)


def test_heads_stop_at_one_per_attention_even_when_asked_for_more_than_there_are():
    model, pruned, _ = pruned_swin(macs_ratio=0.3)
    for name in ("stage1", "stage2"):
        attn = getattr(pruned, name).attn
        assert attn.num_heads >= 1 and attn.qkv.out_features == 3 * attn.num_heads * 8
    assert check_pruned(pruned, example(), reference=model) == []
