"""Checkpoints are plain dicts of tensors: a pruned model reloads with weights_only=True, bad files fail clearly."""

from __future__ import annotations

import argparse

import pytest
import torch

from edgekit.compress.prune import count, prune
from edgekit.errors import ConfigError, DataError
from edgekit.models import build, load_checkpoint, save_checkpoint

ARGS = {"in_channels": 1, "num_classes": 10}


def test_pruned_model_round_trips_through_a_weights_only_checkpoint(tmp_path):
    model = build("resnet8", ARGS).eval()
    x = torch.randn(3, 1, 28, 28)
    prune(model, x[:1], macs_ratio=0.5)
    save_checkpoint(tmp_path / "m.pt", model, name="resnet8", args=ARGS)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # no pickled module inside
    assert payload["widths"]["stem.0"]["out"] < 16
    again = load_checkpoint(tmp_path / "m.pt").eval()
    torch.testing.assert_close(again(x), model(x))


def test_pruning_really_removes_computation():
    model = build("resnet8", ARGS).eval()
    x = torch.randn(1, 1, 28, 28)
    res = prune(model, x, macs_ratio=0.5)
    assert res.macs <= 0.5 * res.dense_macs
    assert res.params < res.dense_params
    assert count(model, x) == (res.macs, res.params)
    assert model(x).shape == (1, 10)


def test_corrupt_pickled_and_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="bad.pt: unreadable checkpoint"):
        load_checkpoint(bad)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "edgekit-model/1", "obj": argparse.Namespace(cmd="rm -rf")}, evil)  # not a weight
    with pytest.raises(DataError, match="evil.pt: unreadable checkpoint"):
        load_checkpoint(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(1)}, foreign)
    with pytest.raises(DataError, match="not an edgekit checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(DataError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_weights_that_do_not_fit_are_named(tmp_path):
    model = build("resnet8", ARGS)
    save_checkpoint(tmp_path / "m.pt", model, name="resnet8", args=ARGS)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["state_dict"]["fc.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(DataError, match="weights do not fit model 'resnet8'"):
        load_checkpoint(tmp_path / "m.pt")


def test_unknown_model_and_bad_args():
    with pytest.raises(ConfigError, match="Did you mean 'resnet8'"):
        build("resnet-8")
    with pytest.raises(ConfigError, match="model.args for 'resnet8'"):
        build("resnet8", {"channels": 3})


def test_a_model_torch_pruning_cannot_handle_is_left_untouched_with_a_config_error():
    """KWT's attention heads break torch-pruning: a clear ConfigError, and the model is exactly as before."""
    torch.manual_seed(0)
    model = build("kwt", {"num_classes": 12}).eval()
    x = torch.randn(2, 1, 49, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        out = model(x)
    with pytest.raises(ConfigError, match="torch-pruning could not prune KWT"):
        prune(model, x[:1], macs_ratio=0.5)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(x), out)


def test_an_unreachable_target_restores_the_model():
    model = build("resnet8", ARGS).eval()
    x = torch.randn(1, 1, 28, 28)
    dense = count(model, x)
    with pytest.raises(ConfigError, match="reached only"):
        prune(model, x, macs_ratio=0.1, max_steps=1)
    assert count(model, x) == dense
