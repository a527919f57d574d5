"""edgekit mends torch-pruning in place only for the length of a pruning run."""

from __future__ import annotations

import types

import pytest

from edgekit.compress.patching import patched


def test_what_is_replaced_inside_the_block_is_restored_after_it_even_when_it_raises():
    class Library:
        def walk(self):
            return "original"

    module = types.SimpleNamespace(helper=len)
    original_walk = Library.walk
    with pytest.raises(RuntimeError), patched((Library, "walk", lambda self: "mended"), (module, "helper", abs)):
        assert Library().walk() == "mended" and module.helper is abs
        with patched((Library, "walk", lambda self: "nested")):
            assert Library().walk() == "nested"
        assert Library().walk() == "mended"
        raise RuntimeError("pruning failed half-way")
    assert Library.walk is original_walk and module.helper is len


def test_a_pruning_run_leaves_torch_pruning_as_it_found_it():
    torch = pytest.importorskip("torch")
    tp = pytest.importorskip("torch_pruning")
    from edgekit.compress.prune import prune_any

    places = ((tp.dependency.group.Group, "add_dep"), (tp.dependency.graph.DependencyGraph, "get_all_groups"),
              (tp.dependency.graph.DependencyGraph, "get_out_channels"),
              (tp.dependency.index_mapping, "update_split_index_mapping"),
              (tp.pruner.algorithms.base_pruner.BasePruner, "_round_to"))
    before = [getattr(owner, name) for owner, name in places]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 4)).eval()
    pruned, _, _ = prune_any(model, torch.randn(1, 3, 16, 16), macs_ratio=0.7, log=lambda m: None)
    assert pruned is not None
    assert [getattr(owner, name) for owner, name in places] == before
