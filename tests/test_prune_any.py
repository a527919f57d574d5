"""Structured pruning of architectures torch-pruning gets wrong: checked, bounded, and never a broken model."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from edgekit.compress.prune import check_pruned, load_pruned, prune_any, save_pruned  # noqa: E402
from edgekit.compress.prune_splits import split_sites  # noqa: E402


class SplitBlock(nn.Module):
    """Like a mixed-kernel convolution (timm's MixedConv2d): the forward splits its input into unequal parts,
    with sizes stored on the module and read at every call."""

    def __init__(self, c: int):
        super().__init__()
        self.splits = [c * 3 // 8, c - c * 3 // 8]
        self.a = nn.Conv2d(self.splits[0], self.splits[0], 3, padding=1, groups=self.splits[0])
        self.b = nn.Conv2d(self.splits[1], self.splits[1], 5, padding=2, groups=self.splits[1])

    def forward(self, x):
        xa, xb = torch.split(x, self.splits, 1)
        return torch.cat([self.a(xa), self.b(xb)], 1)


class HardCodedSplitBlock(SplitBlock):
    """The same block with the split written into the forward: nothing on the module to update."""

    def forward(self, x):
        return torch.cat([self.a(x[:, :24]), self.b(x[:, 24:])], 1)


class ComputedSplitBlock(SplitBlock):
    """Splits by a size computed in the forward, beside an unrelated attribute of the same value."""

    def __init__(self, c: int):
        super().__init__(c)
        self.total, self.out_chs = c, c // 2
        self.a = nn.Conv2d(c // 2, c // 2, 3, padding=1, groups=c // 2)
        self.b = nn.Conv2d(c // 2, c // 2, 5, padding=2, groups=c // 2)

    def forward(self, x):
        xa, xb = torch.split(x, self.total // 2, 1)
        return torch.cat([self.a(xa), self.b(xb)], 1)


class ReshapeBlock(nn.Module):
    """Reshapes by a channel count it keeps in an attribute, as selective-kernel and layer-scale blocks do:
    pruning the channels around it breaks its forward, which torch-pruning cannot see."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        y = self.conv(x)
        return y * y.reshape(b, self.c, h * w).softmax(-1).reshape(b, self.c, h, w)


class Res2Block(nn.Module):
    """Like Res2Net's bottleneck: equal parts sized by an integer attribute, each part added to the previous
    part's output before its convolution, the last part passed through, all concatenated."""

    def __init__(self, width: int, scale: int = 4, groups: int = 1):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(width * scale, width * scale, 1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, groups=groups) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, width * scale, 1)

    def forward(self, x):
        parts = torch.split(self.conv1(x), self.width, 1)
        out, sp = [], None
        for i, conv in enumerate(self.convs):
            sp = conv(parts[i] if sp is None else sp + parts[i])
            out.append(torch.relu(sp))
        return self.conv3(torch.cat([*out, parts[-1]], 1)) + x


class MixedNet(nn.Module):
    def __init__(self, block=SplitBlock):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.expand = nn.Conv2d(32, 64, 1)
        self.mixed = block(64)
        self.body = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.body(self.mixed(self.expand(self.stem(x)))).mean((2, 3)))


class PartialResidual(nn.Module):
    """``out[:, :c] + x``: sends torch-pruning 1.6's dependency walk round and round (seen on RexNet)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin = cin
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        out = self.conv(x)
        return torch.cat([out[:, : self.cin] + x, out[:, self.cin:]], 1)


class RexLike(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [16, 24, 32, 40, 48, 56, 64, 72]
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(*[PartialResidual(a, b) for a, b in zip(chans, chans[1:], strict=False)])
        self.head = nn.Linear(72, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = dim
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.attn_dim))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.ModuleList(nn.ModuleDict({"n1": nn.LayerNorm(dim), "attn": Attention(dim, 4),
                                                   "n2": nn.LayerNorm(dim), "fc1": nn.Linear(dim, 4 * dim),
                                                   "fc2": nn.Linear(4 * dim, dim)}) for _ in range(depth))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = x + blk["attn"](blk["n1"](x))
            x = x + blk["fc2"](torch.relu(blk["fc1"](blk["n2"](x))))
        return self.head(x.mean(1))


def example():
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_a_split_sized_by_a_module_attribute_is_pruned_with_everything_else_and_the_attribute_follows():
    torch.manual_seed(0)
    model = MixedNet().eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.strategy == "all layers" and res.left_alone == ()
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    # each part keeps feeding its own convolution (unequal parts: mapped the wrong way round, shapes would clash)
    assert pruned.mixed.splits == [pruned.mixed.a.in_channels, pruned.mixed.b.in_channels] != [24, 40]


def test_equal_parts_sized_by_an_integer_attribute_are_pruned_through_the_adds_between_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), Res2Block(16), Res2Block(16), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10)).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    for block in (pruned[1], pruned[2]):
        widths = [c.in_channels for c in block.convs]
        assert sum(widths) < 48
        assert (block.width == widths[0] if isinstance(block.width, int) else block.width[:3] == widths)


def test_equal_parts_read_by_grouped_convolutions_keep_every_group_of_every_part_alike():
    """Res2NeXt: each part of the split goes through a convolution with groups=8; a part may only lose whole
    rows of those groups, the same in every part, or the next part's add and the attribute fall out of step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), Res2Block(32, groups=8), Res2Block(32, groups=8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    for block in (pruned[1], pruned[2]):
        widths = {c.in_channels for c in block.convs}
        assert widths == {block.width} and block.width < 32 and block.width % 8 == 0


def test_only_the_attribute_a_split_really_reads_is_recorded_for_rewriting():
    for block, expected in ((SplitBlock(64), ["splits"]), (ComputedSplitBlock(64), ["total"]),
                            (Res2Block(16), ["width"])):
        x = torch.randn(1, 64, 8, 8, requires_grad=True)  # as in a traced model: the split's input has a grad_fn
        with split_sites(block, x) as sites:
            block(x)
        assert [site.attr for site in sites] == expected, type(block).__name__
    # ComputedSplitBlock splits by total // 2: 'total' is rewritten, 'out_chs' (equal to the part size) is not
    model = MixedNet(ComputedSplitBlock).eval()
    pruned, _, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and pruned.mixed.out_chs == 32, [a.detail for a in attempts]


def test_halves_of_a_computed_split_are_pruned_alike_and_the_attribute_it_is_computed_from_follows(tmp_path):
    """CSP stages split by ``self.expand_chs // 2``: both halves must keep one size, so torch-pruning is told to
    remove the same positions from each, and ``expand_chs`` is rewritten to twice the new half."""
    torch.manual_seed(0)
    model = MixedNet(ComputedSplitBlock).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.strategy == "all layers" and res.left_alone == () and res.macs_ratio <= 0.6
    assert check_pruned(pruned, example(), reference=model) == []
    half = pruned.mixed.a.in_channels
    assert half == pruned.mixed.b.in_channels < 32 and pruned.mixed.total == 2 * half
    save_pruned(tmp_path / "p.pt", pruned, model)
    rebuilt = load_pruned(MixedNet(ComputedSplitBlock).eval(), tmp_path / "p.pt")
    assert torch.equal(rebuilt(example()), pruned(example()))


class SelectiveSplitBlock(nn.Module):
    """Like timm's SelectiveKernel with split input: halves of ``self.in_channels // 2`` beside an
    ``out_channels`` of the same value, on a residual stream (the second block's input is an add)."""

    def __init__(self, c: int):
        super().__init__()
        self.in_channels = self.out_channels = c
        self.a = nn.Conv2d(c // 2, c // 2, 3, padding=1)
        self.b = nn.Conv2d(c // 2, c // 2, 3, padding=2, dilation=2)
        self.c = nn.Conv2d(c, c, 1)

    def forward(self, x):
        xa, xb = torch.split(x, self.in_channels // 2, 1)
        return x + self.c(torch.cat([self.a(xa), self.b(xb)], 1).relu())


def test_a_computed_split_on_a_residual_stream_is_pruned_alike_and_only_the_attribute_read_follows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), SelectiveSplitBlock(64), SelectiveSplitBlock(64),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.left_alone == () and check_pruned(pruned, example(), reference=model) == []
    for block in (pruned[1], pruned[2]):
        assert block.a.in_channels == block.b.in_channels < 32
        assert block.in_channels == 2 * block.a.in_channels and block.out_channels == 64


class GatedBlock(nn.Module):
    """A gate that chunks one convolution's output in two (GLU-style, as in iFormer's and NAFNet's gates)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, 2 * c, 3, padding=1)

    def forward(self, x):
        v, gate = self.conv(x).chunk(2, dim=1)
        return v * gate.sigmoid()


def test_the_halves_of_a_chunked_gate_are_pruned_alike():
    torch.manual_seed(0)
    model = MixedNet(GatedBlock).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.left_alone == () and res.macs_ratio <= 0.6
    assert check_pruned(pruned, example(), reference=model) == []
    assert pruned.mixed.conv.out_channels < 128 and pruned.mixed.conv.out_channels % 2 == 0


def test_a_module_whose_forward_breaks_after_pruning_is_left_alone_and_the_rest_is_pruned():
    torch.manual_seed(0)
    model = MixedNet(ReshapeBlock).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.7, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert not attempts[0].passed and "mixed" in attempts[0].detail  # names the module its forward failed in
    assert res.macs_ratio <= 0.7 and check_pruned(pruned, example(), reference=model) == []
    assert pruned.mixed.conv.in_channels == pruned.mixed.c == 64  # left as it was


def test_a_split_written_into_the_forward_keeps_the_part_it_fixes_and_the_rest_is_pruned():
    torch.manual_seed(0)
    model = MixedNet(HardCodedSplitBlock).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    assert pruned.mixed.a.in_channels == 24  # x[:, :24] still reads 24 channels: that part kept its width
    assert pruned.expand.out_channels < 64  # the layers around it were pruned


class GroupedNet(nn.Module):
    """A 1x1 convolution feeding a grouped 3x3 one (8 groups of 8 channels), as in ResNeXt, RegNet and DPN."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.a = nn.Conv2d(32, 64, 1)
        self.b = nn.Conv2d(64, 64, 3, padding=1, groups=8)
        self.c = nn.Conv2d(64, 32, 1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x).relu()
        return self.head((x + self.c(self.b(self.a(x).relu()).relu())).mean((2, 3)))


def test_a_grouped_convolution_is_narrowed_step_by_step_in_every_group_alike():
    """torch-pruning rounded the per-group count as if it were the layer's width: one step removed a whole
    group's positions, and layers whose groups hold 8 channels were never pruned."""
    from edgekit.compress.prune_grouped import per_group_pruned

    assert per_group_pruned(1, size=8, groups=32, multiple=8) == 1  # 32 x 7 channels left: a multiple of 8
    assert per_group_pruned(3, size=8, groups=2, multiple=8) == 4  # 2 x 4 left (2 x 5 would not be)
    assert per_group_pruned(8, size=8, groups=32, multiple=8) == 7  # a group's last position is never removed
    assert per_group_pruned(1, size=4, groups=1, multiple=8) == 0  # too narrow to round: left as it is
    torch.manual_seed(0)
    model = GroupedNet().eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.6 and check_pruned(pruned, example(), reference=model) == []
    assert pruned.b.groups == 8 and 8 <= pruned.b.in_channels < 64 and pruned.b.in_channels % 8 == 0


def test_a_dependency_walk_that_never_ends_is_cut_short_in_bounded_time():
    torch.manual_seed(0)
    t0 = time.monotonic()
    pruned, res, attempts = prune_any(RexLike().eval(), example(), macs_ratio=0.5,
                                      deadline=time.monotonic() + 60, log=lambda m: None)
    assert time.monotonic() - t0 < 120
    assert attempts and all(a.detail for a in attempts)  # every attempt says why it ended
    if pruned is not None:  # whatever came out is sound
        assert check_pruned(pruned, example(), reference=RexLike().eval()) == []


class DualPath(nn.Module):
    """Two branches concatenated along the channels, then reduced: the concatenation DPN-style nets stack."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a, self.b = nn.Conv2d(16, 24, 3, padding=1), nn.Conv2d(16, 40, 1)
        self.mix = nn.Conv2d(64, 32, 1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        h = self.stem(x).relu()
        return self.head(self.mix(torch.cat([self.a(h), self.b(h)], 1)).relu().mean((2, 3)))


def test_a_concatenation_is_sized_from_what_autograd_recorded_not_from_a_graph_walk():
    """torch-pruning sizes each input of a concatenation by walking the graph; on dual-path nets the walk gives up
    (None) and the whole dependency graph failed with a TypeError. The concatenation's autograd node records
    every input's shape: 24 and 40 channels here."""
    import torch_pruning as tp

    from edgekit.compress.prune import _bounded_groups
    from edgekit.compress.prune_mappings import concat_sizes

    model = DualPath().eval()
    with _bounded_groups(model):
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example())
    cats = [n for n in dg.module2node.values() if n.type == tp.ops.OPTYPE.CONCAT]
    assert len(cats) == 1 and concat_sizes(cats[0]) == [24, 40] and cats[0].module.concat_sizes == [24, 40]


def test_a_group_whose_indices_run_past_its_layers_is_skipped_and_named_and_the_rest_is_pruned(monkeypatch):
    """When torch-pruning's index mapping gets a group wrong (indices beyond a layer's channels: DPN, RexNet,
    Res2Net), computing its importance raises IndexError and the whole pruning failed. The group is now skipped as
    torch-pruning skips one without importance: its layer keeps its width, is named, and the others are pruned."""
    import torch_pruning as tp

    model = MixedNet().eval()
    real = tp.importance.MagnitudeImportance.__call__

    def broken_for_body0(self, group):
        if group[0].dep.target.module is model_copy_body0():
            raise IndexError("index 64 is out of bounds for dimension 0 with size 64")
        return real(self, group)

    # prune_any works on copies: the layer is found by its place in whichever copy is being pruned.
    from edgekit.compress import prune as pruning

    current: list = []
    original_prune_steps = pruning._prune_steps

    def remember(tp_, m, *a, **k):
        current[:] = [m]
        return original_prune_steps(tp_, m, *a, **k)

    def model_copy_body0():
        return current[0].body[0] if current else None

    monkeypatch.setattr(pruning, "_prune_steps", remember)
    monkeypatch.setattr(tp.importance.MagnitudeImportance, "__call__", broken_for_body0)
    torch.manual_seed(0)
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.7, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert "body.0" in res.left_alone and pruned.body[0].out_channels == 64
    assert res.macs_ratio <= 0.7 and check_pruned(pruned, example(), reference=model) == []


def test_attention_is_pruned_by_whole_heads_or_left_alone_never_broken():
    torch.manual_seed(0)
    model = TinyViT().eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.7, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert check_pruned(pruned, example(), reference=model) == []
    for blk in pruned.blocks:
        attn = blk["attn"]
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim


def test_an_inconsistent_layer_is_named_before_anything_runs_it():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4))
    model[1].in_channels = 6  # what a bad pruning step leaves: channels no longer divide by groups
    problems = check_pruned(model, torch.randn(1, 3, 8, 8))
    assert problems and "groups=4" in problems[0] and problems[0].startswith("1:")


def test_a_pruned_model_is_saved_without_pickled_modules_and_rebuilt_exactly(tmp_path):
    torch.manual_seed(0)
    model = MixedNet().eval()
    pruned, _, _ = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    save_pruned(tmp_path / "p.pt", pruned, model)
    torch.manual_seed(1)  # another dense model: only the saved tensors and attributes may matter
    rebuilt = load_pruned(MixedNet().eval(), tmp_path / "p.pt")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), pruned(x), atol=1e-6)
    assert (tmp_path / "p.json").is_file()


class SlowNet(nn.Module):
    """A model whose every step takes 20 ms, as a large network's does on a small CPU."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        time.sleep(0.02)
        return self.fc(x)


def test_distillation_stops_inside_an_epoch_that_would_outlast_its_seconds():
    from edgekit.compress.prune_job import distill

    torch.manual_seed(0)
    teacher, student = nn.Linear(8, 4), SlowNet()
    x = torch.randn(4000, 8).numpy()  # 113 steps of 32: at 20 ms each, 2.3 s for one epoch
    r = distill(student, teacher, x, seconds=0.3)
    assert 0 < r["epochs"] < 1
    assert r["seconds"] < 2.0  # an unbounded first epoch takes more than 2.3 s


def test_distillation_that_cannot_make_one_pass_in_its_share_stops_after_its_probe_and_says_why():
    """A tenth of a pass never brought a half-pruned student back (resnet50: 0.12 epochs in 71 s, agreement 0.2):
    distillation times its first steps and, when its share cannot hold one pass, leaves the time to the searches."""
    from edgekit.compress.prune_job import PROBE_STEPS, distill

    torch.manual_seed(0)
    x = torch.randn(8000, 8).numpy()  # 225 steps of 32 at 20 ms: 4.5 s a pass, against a 3 s share
    r = distill(SlowNet(), nn.Linear(8, 4), x, seconds=3.0)
    assert r["stopped"] and "one pass over the 7200 samples takes about" in r["stopped"], r
    assert r["epochs"] == round(PROBE_STEPS / 225, 2)  # stopped after its probe steps
    assert r["seconds"] < 2.5  # the share was not used up
    quick = distill(nn.Linear(8, 4), nn.Linear(8, 4), x[:400], seconds=3.0, max_epochs=2)
    assert quick["stopped"] is None and quick["epochs"] == 2


def test_a_strategy_whose_groups_keep_running_away_leaves_time_for_the_next(monkeypatch):
    """Each strategy but the last restarts without its runaway groups for at most an equal part of the time
    left (efficientvit_m0: "all layers" ran away group after group and took the whole share, so "attention left
    alone", which prunes it, was never tried)."""
    from edgekit.compress import prune as prune_mod

    real = prune_mod.prune
    runaways = []

    def prune_attention_runs_away(model, example, **kwargs):
        if kwargs.get("heads", True):  # "all layers": every restart finds another runaway group
            time.sleep(0.2)
            runaways.append(len(kwargs.get("left_alone", ())))
            raise prune_mod._RunawayGroup(f"blocks.{len(runaways)}.attn.qkv")
        return real(model, example, **kwargs)

    monkeypatch.setattr(prune_mod, "prune", prune_attention_runs_away)
    torch.manual_seed(0)
    model = TinyViT().eval()
    t0 = time.monotonic()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.7, deadline=t0 + 6, log=lambda m: None)
    assert not attempts[0].passed and "used up" in attempts[0].detail and time.monotonic() - t0 < 12
    assert attempts[0].seconds < 3.5  # its part: a third of the time (three strategies), plus one restart
    assert pruned is not None and res.strategy == "attention left alone", [a.detail for a in attempts]


class GainConv2d(nn.Conv2d):
    """Like timm's ScaledStdConv2d (NF-ResNet, NFNet): one more parameter per output channel, used in forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.gain, self.bias)


def test_a_layers_own_per_channel_parameters_lose_the_same_channels_as_its_weight():
    torch.manual_seed(0)
    model = nn.Sequential(GainConv2d(3, 32, 3, padding=1), nn.ReLU(), GainConv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()
    with torch.no_grad():  # the first convolution's channel i: gain i + 1, and i + 1 in its weight too
        model[0].gain.copy_(torch.arange(1.0, 33.0).view(-1, 1, 1, 1))
        model[0].weight[:, 0, 0, 0] = torch.arange(1.0, 33.0)
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.6, log=lambda m: None)
    assert pruned is not None and attempts[0].passed, [a.detail for a in attempts]
    assert res.left_alone == () and check_pruned(pruned, example(), reference=model) == []
    first = pruned[0]
    assert first.gain.shape[0] == first.out_channels < 32 and pruned[2].gain.shape[0] == pruned[2].out_channels
    assert torch.equal(first.gain.view(-1), first.weight[:, 0, 0, 0])  # each kept channel kept its own gain


def test_a_walk_that_runs_away_in_one_block_leaves_that_layer_alone_in_every_copy_of_the_block():
    from edgekit.compress.module_names import same_place_in_every_block

    model = TinyViT(depth=3)
    assert same_place_in_every_block(model, "blocks.1.fc2") == ["blocks.1.fc2", "blocks.0.fc2", "blocks.2.fc2"]
    assert same_place_in_every_block(model, "head") == ["head"]  # no other block has one
    assert same_place_in_every_block(model, "blocks.7.fc2") == ["blocks.7.fc2"]  # a name the model lacks


def test_the_same_layer_running_away_in_a_second_block_leaves_it_alone_in_every_block(monkeypatch):
    from edgekit.compress import prune as prune_mod

    real, seen = prune_mod.prune, []

    def runs_away_in_two_blocks(model, example, **kwargs):
        seen.append(tuple(kwargs.get("left_alone", ())))
        if len(seen) <= 2:
            raise prune_mod._RunawayGroup(f"blocks.{len(seen) - 1}.fc2")
        return real(model, example, **kwargs)

    monkeypatch.setattr(prune_mod, "prune", runs_away_in_two_blocks)
    torch.manual_seed(0)
    pruned, res, attempts = prune_any(TinyViT(depth=4).eval(), example(), macs_ratio=0.8, log=lambda m: None)
    assert seen[1] == ("blocks.0.fc2",)  # after the first, only that layer
    assert set(seen[2]) == {f"blocks.{i}.fc2" for i in range(4)}  # after the second, every block's
    assert pruned is not None, [a.detail for a in attempts]


class SingleHeadAttention(nn.Module):
    """Like SHViT's single-head attention on a part of the channels: torch-pruning's reshape mapping infers the
    attention output's channel count as 0 and divided by it, failing the whole trace."""

    def __init__(self, dim: int = 32, pdim: int = 8, qk: int = 8):
        super().__init__()
        self.pdim, self.qk, self.dim = pdim, qk, dim
        self.qkv = nn.Conv2d(pdim, 2 * qk + pdim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        x1, x2 = torch.split(x, [self.pdim, self.dim - self.pdim], dim=1)
        q, k, v = (t.flatten(2) for t in self.qkv(x1).split([self.qk, self.qk, self.pdim], dim=1))
        x1 = (v @ (q.transpose(-1, -2) @ k).softmax(dim=-1).transpose(-1, -2)).reshape(b, self.pdim, h, w)
        return self.proj(torch.cat([x1, x2], dim=1))


def test_a_reshape_whose_channels_torch_pruning_sizes_as_zero_does_not_stop_pruning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 32, 3, padding=1), SingleHeadAttention(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(32, 10)).eval()
    pruned, res, attempts = prune_any(model, example(), macs_ratio=0.7, log=lambda m: None)
    assert pruned is not None, [a.detail for a in attempts]
    assert res.macs_ratio <= 0.7 and check_pruned(pruned, example(), reference=model) == []
