"""Optimizers and per-step learning-rate schedules, named as recipes write them (``train.optimizer``,
``train.schedule``).

Every schedule is stepped once per optimizer step and its state is part of the resume checkpoint.
"""

from __future__ import annotations

import math

import torch

from edgekit.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "step")
ONECYCLE_WARMUP = 0.25  # fraction of all steps spent rising to the peak when train.warmup_epochs is 0


def make_optimizer(params, *, name: str = "sgd", lr: float, momentum: float = 0.9,
                   weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW with ``momentum`` as beta1.

    Raises:
        ConfigError: an unknown name.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ConfigError(f"train.optimizer = {name!r}: must be one of {', '.join(OPTIMIZERS)}")


def make_scheduler(opt: torch.optim.Optimizer, *, name: str = "onecycle", lr: float, epochs: int,
                   steps_per_epoch: int, warmup_epochs: float = 0.0, step_epochs: int = 30,
                   step_gamma: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step learning-rate schedule peaking at ``lr``.

    Args:
        opt: the optimizer whose learning rate it drives.
        name: "onecycle" (rise then anneal, momentum cycled; 25 % rise unless ``warmup_epochs``),
            "cosine" (linear warm-up, then cosine to zero) or "step" (linear warm-up, then ``lr`` times
            ``step_gamma`` every ``step_epochs`` epochs).
        lr: the peak learning rate.
        epochs, steps_per_epoch: the length of training.
        warmup_epochs: linear warm-up from ``lr / warm-up steps`` to ``lr``.

    Returns:
        The scheduler; call ``step()`` after every optimizer step.

    Raises:
        ConfigError: an unknown name, or a warm-up as long as training.

    Example:
        >>> make_scheduler(opt, name="cosine", lr=0.1, epochs=30, steps_per_epoch=390, warmup_epochs=2)
    """
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if warmup >= total and warmup > 0:
        raise ConfigError(f"train.warmup_epochs = {warmup_epochs} covers all {epochs} epochs: nothing left to train")
    if name == "onecycle":
        pct = warmup / total if warmup else ONECYCLE_WARMUP
        if pct * total <= 1 and total >= 3:  # OneCycleLR divides by zero when its rising phase has no step
            pct = 2 / total
        elif total < 3:  # too short to rise and fall: a constant rate
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct)
    for group in opt.param_groups:
        group["lr"] = lr  # LambdaLR scales the groups' initial learning rate
    if name == "cosine":
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    elif name == "step":
        every = step_epochs * steps_per_epoch

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return step_gamma ** (step // every)
    else:
        raise ConfigError(f"train.schedule = {name!r}: must be one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
