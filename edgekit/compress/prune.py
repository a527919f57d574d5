"""Structured channel pruning with torch-pruning's dependency graph (DepGraph).

Removing whole channels (and every channel coupled to them through residual adds, BatchNorm and
concatenations) makes the network really smaller and faster; ``torch.nn.utils.prune`` would only
zero weights. Pruning proceeds in small steps until the MACs fall to the target ratio.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from edgekit.errors import ConfigError, require


@dataclass(frozen=True)
class PruneResult:
    """Measured cost of the model before and after pruning."""

    dense_macs: int
    dense_params: int
    macs: int
    params: int
    steps: int

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.dense_macs

    @property
    def params_ratio(self) -> float:
        return self.params / self.dense_params


def count(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on ``example``, as torch-pruning counts them."""
    tp = require("torch_pruning", extra="train", why="structured pruning")
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def prune(model: nn.Module, example: torch.Tensor, *, macs_ratio: float, round_to: int = 8,
          importance: str = "l2", max_steps: int = 40, global_pruning: bool = False) -> PruneResult:
    """Remove channels from ``model`` in place until its MACs are at most ``macs_ratio`` of the dense ones.

    Args:
        model: a CPU model in eval mode; its output layer (the one producing the logits) is never pruned.
        example: one input batch, used to trace the dependency graph and count MACs.
        macs_ratio: target MACs / dense MACs, e.g. 0.5.
        round_to: channel counts are kept multiples of this where the layer is wide enough.
        importance: "l2" or "l1" weight magnitude, or "random" (for ablations).
        max_steps: the pruning schedule is split in this many steps; fewer are taken once the target is met.

    Returns:
        A PruneResult with the dense and pruned MACs and parameter counts.

    Raises:
        ConfigError: when the target cannot be reached (for example a model with nothing prunable) or
            torch-pruning fails on the model; ``model`` is then left exactly as it was.
    """
    tp = require("torch_pruning", extra="train", why="structured pruning")
    model.eval()
    dense_macs, dense_params = count(model, example)
    if macs_ratio >= 1.0:
        return PruneResult(dense_macs, dense_params, dense_macs, dense_params, 0)
    backup = copy.deepcopy(model)  # torch-pruning edits layers in place: a failure must not leave half a model
    try:
        return _prune_steps(tp, model, example, macs_ratio=macs_ratio, round_to=round_to, importance=importance,
                            max_steps=max_steps, global_pruning=global_pruning, dense=(dense_macs, dense_params))
    except ConfigError:
        _restore(model, backup)
        raise
    except Exception as exc:  # torch-pruning's own failures (attention heads, channel shuffles, RNNs)
        _restore(model, backup)
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"torch-pruning could not prune {type(model).__name__} ({type(exc).__name__}: {detail}); "
                          "the model is left as it was: turn pruning off (prune.enabled=false, or no --prune)") from exc


def _restore(model: nn.Module, backup: nn.Module) -> None:
    """Put ``model`` back to ``backup``'s layers (the same object, so callers' references stay valid)."""
    model.__dict__.update(backup.__dict__)


def _prune_steps(tp, model, example, *, macs_ratio, round_to, importance, max_steps, global_pruning,
                 dense) -> PruneResult:
    dense_macs, dense_params = dense
    with torch.no_grad():
        n_out = model(example).shape[1]
    # The layers that produce the logits keep their width: their channels are the classes.
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_out
               or isinstance(m, nn.Conv2d) and m.out_channels == n_out]
    imp = {"l1": tp.importance.MagnitudeImportance(p=1), "l2": tp.importance.MagnitudeImportance(p=2),
           "random": tp.importance.RandomImportance()}[importance]
    pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=0.95, iterative_steps=max_steps,
                                  round_to=round_to, ignored_layers=ignored, global_pruning=global_pruning)
    macs, params = dense_macs, dense_params
    steps = 0
    while steps < max_steps:
        pruner.step()
        steps += 1
        macs, params = count(model, example)
        if macs <= macs_ratio * dense_macs:
            break
    else:
        raise ConfigError(f"prune.macs_ratio = {macs_ratio}: pruning reached only {macs / dense_macs:.2f} of the "
                          f"dense MACs in {max_steps} steps")
    return PruneResult(dense_macs, dense_params, macs, params, steps)
