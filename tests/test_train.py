"""Training learns, distillation follows the teacher, and an interrupted run resumes to the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit import data
from edgekit.models import build
from edgekit.recipe import DataSpec
from edgekit.train import loop

ARGS = {"in_channels": 1, "num_classes": 10}


def fresh_model():
    torch.manual_seed(0)  # the same initial weights every time
    return build("resnet8", ARGS)


@pytest.fixture(scope="module")
def digits():
    s = data.load(DataSpec(name="digits"))
    return s.tensors("train"), s.tensors("val")


def test_training_on_digits_learns(digits):
    train, val = digits
    model = build("resnet8", ARGS)
    res = loop.fit(model, train, val, epochs=3, batch_size=64, lr=0.05)
    assert res.val_accuracy > 0.9
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_kd_loss_is_zero_only_when_student_matches_teacher_and_labels():
    t = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    y = torch.tensor([0, 1])
    same = loop.kd_loss(t, t, y, temperature=4.0, alpha=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    flipped = loop.kd_loss(-t, t, y, temperature=4.0, alpha=1.0)
    assert flipped.item() > 1.0


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["raw-weights", "weight-average"])
def test_resume_after_interruption_gives_the_same_weights(digits, tmp_path, monkeypatch, ema):
    train, val = digits
    kwargs = dict(epochs=3, batch_size=64, lr=0.05, seed=3, ema=ema)
    straight = fresh_model()
    loop.fit(straight, train, val, **kwargs)

    calls = {"n": 0}
    real_accuracy = loop.accuracy

    def dying_accuracy(*a):
        calls["n"] += 1
        if calls["n"] == 2:  # dies in epoch 2, after epoch 1's checkpoint was written
            raise Interrupt
        return real_accuracy(*a)

    state = tmp_path / "train.state"
    monkeypatch.setattr(loop, "accuracy", dying_accuracy)
    with pytest.raises(Interrupt):
        loop.fit(fresh_model(), train, val, state_path=state, **kwargs)
    monkeypatch.setattr(loop, "accuracy", real_accuracy)
    assert state.exists() and not list(tmp_path.glob("*.partial"))

    resumed = fresh_model()
    res = loop.fit(resumed, train, val, state_path=state, **kwargs)
    assert res.resumed_from == 1
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_ema_keeps_the_moving_average_of_every_steps_weights(digits):
    """With ema=d the weights kept are e_1 = w_1, e_k = d_k * e_(k-1) + (1 - d_k) * w_k over the weights w_k
    after each optimizer step, with d_k = min(d, k / (k + 9)) warming up; the steps themselves are the same
    as without averaging."""
    train, val = digits
    decay, kwargs = 0.8, dict(epochs=1, batch_size=128, lr=0.05, seed=1)

    def linear():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(train[0].shape[1:])), 10))

    seen = []  # the weights each step starts from: w_0 (the initial ones), w_1, ...

    def recording_loss(model):
        def loss(out, xb, yb):
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return torch.nn.functional.cross_entropy(out, yb)
        return loss

    raw = linear()
    loop.fit(raw, train, val, loss_fn=recording_loss(raw), **kwargs)
    steps = seen[1:] + [raw.state_dict()]  # w_1 .. w_n
    expected = dict(steps[0])
    for n, w in enumerate(steps[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}

    averaged = linear()
    loop.fit(averaged, train, val, ema=decay, loss_fn=lambda out, xb, yb: torch.nn.functional.cross_entropy(out, yb),
             **kwargs)
    assert len(steps) > 5
    for k, v in averaged.state_dict().items():
        torch.testing.assert_close(v, expected[k])
        assert not torch.allclose(v, raw.state_dict()[k])  # the average, not the last step


def test_ema_outside_0_1_is_a_config_error(digits):
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ema"):
        loop.fit(build("resnet8", ARGS), *digits, epochs=1, batch_size=64, lr=0.05, ema=1.0)


def test_corrupt_resume_state_is_a_clear_error(digits, tmp_path):
    from edgekit.errors import DataError

    state = tmp_path / "train.state"
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="train.state: unreadable training state"):
        loop.fit(build("resnet8", ARGS), *digits, epochs=1, batch_size=64, lr=0.05, state_path=state)


def test_predict_and_accuracy_agree_with_torch(digits):
    (x, y), _ = digits
    model = build("resnet8", ARGS).eval()
    logits = loop.predict(model, x[:100], batch_size=32)
    with torch.no_grad():
        direct = model(torch.from_numpy(x[:100])).numpy()
    np.testing.assert_allclose(logits, direct, atol=1e-5)
    assert loop.accuracy(logits, y[:100]) == float((direct.argmax(1) == y[:100]).mean())


@pytest.mark.parametrize("augment", [(), ("hflip", "crop")])
def test_fewer_training_samples_than_a_batch_train_as_one_batch_an_epoch(digits, augment):
    """A user's small data (here 20 samples with the default batch of 64, with and without augmentation, whose
    per-batch draws are sized to the batch) trains: one step an epoch on all of them."""
    train, val = digits
    small = (train[0][:20], train[1][:20])
    res = loop.fit(fresh_model(), small, val, epochs=2, batch_size=64, lr=0.05, augment=augment)
    assert res.epochs == 2 and len(res.history) == 2 and 0.0 <= res.val_accuracy <= 1.0
