"""Training at scale, piece by piece: rank shards, schedules, augmentation, the batch feeder and metrics.csv."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgekit import data, recipe
from edgekit.errors import ConfigError, MissingDependency
from edgekit.models import build
from edgekit.recipe import DataSpec
from edgekit.train import loop
from edgekit.train.batches import Augment, Batches, epoch_indices, per_rank_batch, shard
from edgekit.train.distributed import World, from_env, launched_by_torchrun
from edgekit.train.metrics import columns, read_csv
from edgekit.train.schedule import make_optimizer, make_scheduler

from .conftest import RECIPES

ARGS = {"in_channels": 1, "num_classes": 10}


@pytest.fixture(scope="module")
def digits():
    s = data.load(DataSpec(name="digits"))
    return s.tensors("train"), s.tensors("val")


# ---- ranks and shards --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 3, 4])
def test_rank_shards_of_every_step_are_exactly_the_single_process_batch(size):
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(7))
    single = epoch_indices(order, steps=15, batch_size=60, world=World())
    per_rank = [epoch_indices(order, steps=15, batch_size=60, world=World(r, size, r)) for r in range(size)]
    for step, batch in enumerate(single):
        parts = [ranks[step] for ranks in per_rank]
        assert all(len(p) == 60 // size for p in parts)
        assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())  # disjoint, and together the batch


def test_global_batch_must_split_evenly_over_ranks():
    assert per_rank_batch(64, World(0, 2, 0)) == 32
    with pytest.raises(ConfigError, match="batch_size = 64 is the global batch .* 3 processes"):
        per_rank_batch(64, World(0, 3, 0))


def test_shard_takes_every_nth_sample_from_the_rank_on():
    assert shard(torch.arange(8), World(1, 4, 1)).tolist() == [1, 5]


def test_torchrun_environment_is_detected_and_checked():
    assert from_env({}) is None and not launched_by_torchrun({})
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert from_env(env) == World(1, 2, 1) and launched_by_torchrun(env)
    assert not launched_by_torchrun({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})  # one process: no DDP
    with pytest.raises(ConfigError, match="out of range"):
        from_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


# ---- schedules ----------------------------------------------------------------------------------------------------

def lrs(name: str, **kw) -> list[float]:
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_scheduler(opt, name=name, lr=0.1, epochs=10, steps_per_epoch=10, **kw)
    out = []
    for _ in range(100):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warms_up_linearly_then_anneals_to_zero():
    lr = lrs("cosine", warmup_epochs=2)
    assert lr[0] == pytest.approx(0.1 / 20) and lr[19] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lr[:19], lr[1:20], strict=True))
    assert all(a >= b for a, b in zip(lr[20:], lr[21:], strict=False)) and lr[-1] < 0.001


def test_step_schedule_drops_by_gamma_every_step_epochs():
    lr = lrs("step", step_epochs=4, step_gamma=0.5)
    assert lr[0] == lr[39] == pytest.approx(0.1)
    assert lr[40] == pytest.approx(0.05) and lr[80] == pytest.approx(0.025)


def test_onecycle_peaks_after_a_quarter_unless_warmup_says_otherwise():
    # torch's OneCycleLR ends its rising phase at step pct_start * total - 1
    assert int(np.argmax(lrs("onecycle"))) == 24
    assert int(np.argmax(lrs("onecycle", warmup_epochs=1))) == 9


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_every_schedule_survives_a_run_of_a_few_steps(steps):
    for name in ("onecycle", "cosine", "step"):
        opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = make_scheduler(opt, name=name, lr=0.1, epochs=1, steps_per_epoch=steps)
        for _ in range(steps):
            opt.step()
            sched.step()
        assert 0 <= opt.param_groups[0]["lr"] <= 0.1


def test_warmup_as_long_as_training_is_rejected():
    with pytest.raises(ConfigError, match="warmup_epochs = 10"):
        lrs("cosine", warmup_epochs=10)


def test_recipe_rejects_unknown_schedule_and_augmentation():
    with pytest.raises(ConfigError, match="must be one of onecycle, cosine, step"):
        recipe.load(RECIPES / "digits_resnet8.yaml", ["train.schedule=cosin"])
    with pytest.raises(ConfigError, match="train.augment\\[0\\] = 'flip': must be one of hflip, crop, specaugment. Did you mean 'hflip'"):
        recipe.load(RECIPES / "digits_resnet8.yaml", ["train.augment=[flip]"])


# ---- augmentation -------------------------------------------------------------------------------------------------

def test_hflip_mirrors_exactly_the_drawn_samples():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    out = Augment(["hflip"])(x, {"flip": torch.tensor([True, False])})
    assert torch.equal(out[0], x[0].flip(2)) and torch.equal(out[1], x[1])


def test_crop_shifts_each_sample_inside_its_zero_padding():
    x = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(3, 1, 1, 1)
    aug = Augment(["crop"], padding=2)
    out = aug(x, {"shift": torch.tensor([[2, 2], [0, 0], [3, 2]])})  # centre, top-left corner, one row down
    assert torch.equal(out[0], x[0])
    assert out[1, 0, :2].abs().sum() == 0 and torch.equal(out[1, 0, 2:, 2:], x[1, 0, :2, :2])
    assert torch.equal(out[2, 0, :3], x[2, 0, 1:]) and out[2, 0, 3].abs().sum() == 0


def test_specaugment_zeroes_one_time_band_and_one_feature_band_per_sample():
    x = torch.ones(64, 1, 49, 10)
    aug = Augment(["specaugment"])
    out = aug(x, aug.draw(64, torch.Generator().manual_seed(0)))
    for sample in out[:, 0]:
        dead_rows = (sample == 0).all(1).nonzero().flatten()  # time frames wiped across every feature
        dead_cols = (sample == 0).all(0).nonzero().flatten()  # feature bins wiped across every frame
        for band, widest in ((dead_rows, 49 // 6), (dead_cols, 10 // 5)):
            assert len(band) <= widest  # never more than a sixth of the frames or a fifth of the bins
            if len(band):
                assert band.max() - band.min() + 1 == len(band)  # one contiguous band
        kept = torch.ones(49, 10, dtype=torch.bool)
        kept[dead_rows] = False
        kept[:, dead_cols] = False
        assert torch.equal(sample == 1, kept)  # everything else untouched
    assert 0.05 < (out == 0).float().mean() < 0.3
    with pytest.raises(ConfigError, match="specaugmentt"):
        Augment(["specaugmentt"])


def test_augmentation_of_a_sample_does_not_depend_on_the_number_of_ranks():
    aug = Augment(["hflip", "crop"])
    params = aug.draw(8, torch.Generator().manual_seed(1))
    x = torch.randn(8, 1, 8, 8)
    whole = aug(x, params)
    for r in range(2):
        part = aug(x[r::2], {k: v[r::2] for k, v in params.items()})
        assert torch.equal(part, whole[r::2])


# ---- the batch feeder ---------------------------------------------------------------------------------------------

def test_background_feeder_yields_the_same_batches_in_the_same_order():
    x, y = torch.randn(100, 1, 4, 4), torch.arange(100)
    idx = epoch_indices(torch.randperm(100), steps=6, batch_size=16, world=World())
    inline = list(Batches(x, y, device=torch.device("cpu"), background=False)(idx))
    threaded = list(Batches(x, y, device=torch.device("cpu"), background=True, prefetch=2)(idx))
    assert len(inline) == len(threaded) == 6
    for (a, b), (c, d) in zip(inline, threaded, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_background_feeder_reraises_errors_in_the_training_thread():
    x, y = torch.randn(10, 3), torch.arange(10)
    bad = [torch.tensor([0, 1]), torch.tensor([50])]  # index out of range in the second batch
    feeder = Batches(x, y, device=torch.device("cpu"), background=True)
    with pytest.raises(IndexError):
        list(feeder(bad))


# ---- fit with the new options, and metrics.csv ---------------------------------------------------------------------

def test_fit_with_cosine_adamw_and_augmentation_learns_and_writes_metrics_csv(digits, tmp_path):
    train, val = digits
    torch.manual_seed(0)
    model = build("resnet8", ARGS)
    res = loop.fit(model, train, val, epochs=3, batch_size=64, lr=0.01, optimizer="adamw", schedule="cosine",
                   warmup_epochs=0.5, augment=["crop"], crop_padding=1, metrics_path=tmp_path / "metrics.csv")
    assert res.val_accuracy > 0.9
    text = (tmp_path / "metrics.csv").read_text().splitlines()
    assert text[0] == ",".join(columns()) == "epoch,step,loss,lr,val_accuracy,seconds"
    rows = read_csv(tmp_path / "metrics.csv")
    steps = len(train[0]) // 64
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [steps, 2 * steps, 3 * steps]
    assert rows[-1]["val_accuracy"] == res.history[-1]["val_accuracy"]  # written with repr: exact round trip
    assert rows[-1]["lr"] < rows[0]["lr"] and all(r["seconds"] > 0 for r in rows)
    assert not list(tmp_path.glob("*.partial"))


def test_tensorboard_without_the_package_names_it(digits, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(MissingDependency, match="pip install tensorboard"):
        loop.fit(build("resnet8", ARGS), *digits, epochs=1, batch_size=64, lr=0.05, tensorboard_dir=tmp_path / "tb")


def test_validation_metric_can_be_any_score(digits):
    train, val = digits
    res = loop.fit(build("resnet8", ARGS), train, val, epochs=1, batch_size=64, lr=0.05,
                   evaluate=lambda model, x, y: 0.5, metric="half")
    assert res.val_accuracy == 0.5 and res.metric == "half" and "val_half" in res.history[0]


@pytest.mark.slow
def test_torch_compile_option_trains_and_keeps_plain_state_dict_keys(digits):
    train, val = digits
    torch.manual_seed(0)
    model = build("resnet8", ARGS)
    keys = list(model.state_dict())
    res = loop.fit(model, (train[0][:256], train[1][:256]), val, epochs=1, batch_size=64, lr=0.05, compile=True)
    assert list(model.state_dict()) == keys  # the checkpoint stays loadable without torch.compile
    assert math.isfinite(res.history[0]["loss"])
