"""Structured channel pruning with torch-pruning's dependency graph (DepGraph), for any architecture.

Removing whole channels (and every channel coupled to them through residual adds, BatchNorm and
concatenations) makes the network really smaller and faster; ``torch.nn.utils.prune`` would only
zero weights. Pruning proceeds in small steps until the MACs fall to the target ratio.

Real architectures break torch-pruning in four ways, each seen on public model definitions here, and
each handled here rather than by the caller:

- attention: the qkv projection must lose whole heads and the module's ``num_heads``/``attn_dim``
  follow (:func:`attention_heads`), else the head reshape fails;
- layers whose forward hard-codes a channel split (mixed kernels, split-and-shuffle blocks) or that
  torch-pruning's index mapping gets wrong (CSP and partial residuals): found by pruning each group a
  little on a copy and running it (:func:`unprunable_roots`), then left alone;
- dependency walks that never end (partial residuals make torch-pruning revisit the same layers with ever
  new index lists: one architecture ran for > 15 min and 11 GB): a group that grows past any real size
  is cut short (:func:`_bounded_groups`) and its root left alone;
- results that look pruned but are inconsistent (a convolution's channels no longer divisible by its
  ``groups``): every pruned model is checked layer by layer and run before it is used (:func:`check_pruned`).

Even so, torch-pruning is native-code-adjacent work on graphs nobody tested; ``edgekit compress`` runs it
in a child process with a time limit (:mod:`edgekit.compress.prune_job`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgekit.compress.module_names import names_of, same_place_in_every_block
from edgekit.compress.patching import patched
from edgekit.compress.prune_grouped import grouped_round_to
from edgekit.compress.prune_mappings import concat_mapping, reshape_mapping
from edgekit.compress.prune_params import head_holders, prune_extra_parameters, whole_heads_for_head_parameters
from edgekit.compress.prune_splits import (
    equal_part_splits,
    refresh_split_offsets,
    running_modules,
    sizes_from_autograd,
    split_sites,
    sync_splits,
)
from edgekit.errors import ConfigError, DataError, first_line, require

GROUP_LIMIT = 64  # a dependency group larger than this many times the model's layer count is a runaway walk


@dataclass(frozen=True)
class PruneResult:
    """Measured cost of the model before and after pruning."""

    dense_macs: int
    dense_params: int
    macs: int
    params: int
    steps: int
    strategy: str = "all layers"
    left_alone: tuple[str, ...] = ()  # layers kept at their width (names), besides the output layer

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
          importance: str = "l2", max_steps: int = 40, global_pruning: bool = False,
          left_alone: tuple[str, ...] = (), heads: bool = True, name_broken: bool = False) -> PruneResult:
    """Remove channels from ``model`` in place until its MACs are at most ``macs_ratio`` of the dense ones.

    Args:
        model: a CPU model in eval mode; its output layer (the one producing the logits) is never pruned.
        example: one input batch, used to trace the dependency graph and count MACs.
        macs_ratio: target MACs / dense MACs, e.g. 0.5.
        round_to: channel counts are kept multiples of this where the layer is wide enough.
        importance: "l2" or "l1" weight magnitude, or "random" (for ablations).
        max_steps: the pruning schedule is split in this many steps; fewer are taken once the target is met.
        left_alone: names of modules (and everything inside them) to keep at their width.
        heads: prune attention by whole heads (and update the modules' head counts); False leaves every
            attention module alone.
        name_broken: when the pruned model's forward fails inside a module, raise :class:`_BrokenForward` naming
            it (for :func:`prune_any`, which leaves that module alone and tries again) instead of ConfigError.

    Returns:
        A PruneResult with the dense and pruned MACs and parameter counts.

    Raises:
        ConfigError: when the target cannot be reached (for example a model with nothing prunable), torch-pruning
            fails on the model, or the pruned model fails :func:`check_pruned`; ``model`` is then left exactly
            as it was.
    """
    tp = require("torch_pruning", extra="train", why="structured pruning")
    model.eval()
    dense_macs, dense_params = count(model, example)
    if macs_ratio >= 1.0:
        return PruneResult(dense_macs, dense_params, dense_macs, dense_params, 0)
    backup = copy.deepcopy(model)  # torch-pruning edits layers in place: a failure must not leave half a model
    try:
        res = _prune_steps(tp, model, example, macs_ratio=macs_ratio, round_to=round_to, importance=importance,
                           max_steps=max_steps, global_pruning=global_pruning, dense=(dense_macs, dense_params),
                           left_alone=left_alone, heads=heads)
        problems = check_pruned(model, example, reference=backup)
        culprit = failing_module(model, example) if problems and name_broken else None
        if culprit:
            raise _BrokenForward(culprit, f"the pruned model's forward fails in it: {problems[0]}")
        if problems:
            raise ConfigError(f"the pruned {type(model).__name__} is inconsistent: {'; '.join(problems[:3])}")
        return res
    except (ConfigError, _RunawayGroup):
        _restore(model, backup)
        raise
    except Exception as exc:  # torch-pruning's own failures (attention heads, channel shuffles, RNNs)
        culprit = failing_module(model, example) if name_broken else None  # a step broke the forward in it
        _restore(model, backup)
        if culprit:
            raise _BrokenForward(culprit, f"the pruned model's forward fails in it: {type(exc).__name__}: "
                                          f"{first_line(exc)}") from exc
        raise ConfigError(f"torch-pruning could not prune {type(model).__name__} ({type(exc).__name__}: "
                          f"{first_line(exc)}); the model is left as it was: turn pruning off "
                          "(prune.enabled=false, or no --prune)") from exc


def failing_module(model: nn.Module, example: torch.Tensor) -> str | None:
    """The name of the innermost module whose forward raises on ``example``; None when the forward runs or fails
    in the model's own code. Leaving that module alone (with every group touching it) and pruning again is how a
    structure torch-pruning gets wrong without noticing (skresnet18's selective kernels: stacked paths) still
    lets the rest of the model be pruned."""
    names = {m: n for n, m in model.named_modules()}
    with running_modules(model) as stack:
        try:
            with torch.no_grad():
                model(example)
        except Exception:  # noqa: BLE001 - any failure: which module it was in is the answer
            return names.get(stack[-1]) or None if stack else None
    return None


def _restore(model: nn.Module, backup: nn.Module) -> None:
    """Put ``model`` back to ``backup``'s layers (the same object, so callers' references stay valid)."""
    model.__dict__.update(backup.__dict__)


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The layers that produce the logits: their channels are the classes, so they keep their width."""
    with torch.no_grad():
        out = model(example)
    out = out[0] if isinstance(out, list | tuple) else out
    n_out = out.shape[1] if out.dim() > 1 else out.shape[0]
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_out
            or isinstance(m, nn.Conv1d | nn.Conv2d) and m.out_channels == n_out]


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """qkv projections of the model's attention modules and their head counts.

    An attention module is one with an integer ``num_heads`` and a fused ``qkv`` Linear (timm's Attention
    and most vision transformers), or a ``torch.nn.MultiheadAttention``.
    """
    heads = {}
    for m in model.modules():
        qkv, n = getattr(m, "qkv", None), getattr(m, "num_heads", None)
        if isinstance(qkv, nn.Linear) and isinstance(n, int) and n > 0 and qkv.out_features % (3 * n) == 0:
            heads[qkv] = n
        elif isinstance(m, nn.MultiheadAttention):
            heads[m] = m.num_heads
    return heads


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Every module that holds attention heads: left alone when heads cannot be pruned."""
    return [m for m in model.modules() if isinstance(getattr(m, "num_heads", None), int)
            or isinstance(m, nn.MultiheadAttention)]


def _update_heads(model: nn.Module, pruner, head_dims: dict[nn.Module, int]) -> None:
    """After a step, give each attention module its new head count and attention width.

    The count is read from the qkv layer's width (heads keep their ``head_dims``): torch-pruning lowers its own
    count before it checks the group, so a refused group (all of a stage's heads, say) left it counting heads
    that were never removed, and the module then split its qkv into 0 heads. Its count is put right as well."""
    for m in model.modules():
        qkv = getattr(m, "qkv", None)
        if qkv is None or qkv not in head_dims or not isinstance(getattr(m, "num_heads", None), int):
            continue
        head_dim = head_dims[qkv]
        m.num_heads = qkv.out_features // (3 * head_dim)
        pruner.num_heads[qkv] = m.num_heads
        if qkv in pruner.out_channel_groups:
            pruner.out_channel_groups[qkv] = m.num_heads
        for attr in ("attn_dim", "all_head_dim", "inner_dim"):
            if isinstance(getattr(m, attr, None), int):
                setattr(m, attr, m.num_heads * head_dim)
        if isinstance(getattr(m, "head_dim", None), int):
            m.head_dim = head_dim


def _prune_steps(tp, model, example, *, macs_ratio, round_to, importance, max_steps, global_pruning, dense,
                 left_alone=(), heads=True) -> PruneResult:
    dense_macs, dense_params = dense
    ignored = output_layers(model, example)
    frozen = {x for n in left_alone for x in model.get_submodule(n).modules()}
    with _bounded_groups(model, frozen) as skipped:
        res = _prune_loop(tp, model, example, macs_ratio=macs_ratio, round_to=round_to, importance=importance,
                          max_steps=max_steps, global_pruning=global_pruning, dense=dense, heads=heads,
                          ignored=ignored)
    return dataclasses.replace(res, left_alone=tuple(sorted(n for n in skipped if n)))


def _prune_loop(tp, model, example, *, macs_ratio, round_to, importance, max_steps, global_pruning, dense, heads,
                ignored) -> PruneResult:
    dense_macs, dense_params = dense
    num_heads = attention_heads(model) if heads else {}
    if not heads:
        ignored += attention_modules(model)
    imp = {"l1": tp.importance.MagnitudeImportance(p=1), "l2": tp.importance.MagnitudeImportance(p=2),
           "random": tp.importance.RandomImportance()}[importance]
    # in/out_channel_groups are passed fresh: torch-pruning 1.6's defaults are shared dicts that it fills with
    # the layers of every model pruned before in the same process.
    with split_sites(model, example) as splits:
        pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=0.95, iterative_steps=max_steps,
                                      round_to=round_to, ignored_layers=ignored, global_pruning=global_pruning,
                                      num_heads=dict(num_heads), prune_num_heads=bool(num_heads),
                                      prune_head_dims=False, head_pruning_ratio=0.9 if num_heads else 0.0,
                                      in_channel_groups={}, out_channel_groups={})
    equal = equal_part_splits(pruner.DG, splits)
    pruner.in_channel_groups.update(equal)
    pruner.out_channel_groups.update(equal)
    head_dims = {qkv: qkv.out_features // (3 * n) for qkv, n in num_heads.items() if isinstance(qkv, nn.Linear)}
    macs, params = dense_macs, dense_params
    steps = 0
    while steps < max_steps:
        pruner.step()
        _update_heads(model, pruner, head_dims)
        sync_splits(splits, pruner.DG)
        steps += 1
        macs, params = count(model, example)
        if macs <= macs_ratio * dense_macs:
            break
    else:
        raise ConfigError(f"prune.macs_ratio = {macs_ratio}: pruning reached only {macs / dense_macs:.2f} of the "
                          f"dense MACs in {max_steps} steps")
    return PruneResult(dense_macs, dense_params, macs, params, steps)


# --- checks ----------------------------------------------------------------------------------------------------


def check_pruned(model: nn.Module, example: torch.Tensor, *, reference: nn.Module | None = None) -> list[str]:
    """What is inconsistent in a pruned model, layer by layer, then in a forward pass; [] when it is sound.

    The layer checks run before any native kernel sees the model: a convolution whose channels do not divide
    by its ``groups`` can corrupt memory instead of raising. Then one forward pass must give finite outputs of
    the same shape as ``reference``'s (the dense model).
    """
    problems = []
    for name, m in model.named_modules():
        problems += [f"{name or type(model).__name__}: {p}" for p in _layer_problems(m)]
    if problems:
        return problems
    try:
        with torch.no_grad():
            out = model(example)
            ref = reference(example) if reference is not None else None
    except Exception as exc:
        return [f"its forward pass fails ({type(exc).__name__}: {first_line(exc)})"]
    out, ref = _first(out), _first(ref)
    if ref is not None and tuple(out.shape) != tuple(ref.shape):
        return [f"it outputs {list(out.shape)} instead of {list(ref.shape)}"]
    if not torch.isfinite(out).all():
        return ["it outputs NaN or infinite values"]
    return []


def _first(y):
    return y[0] if isinstance(y, list | tuple) else y


def _layer_problems(m: nn.Module) -> list[str]:
    if isinstance(m, nn.modules.conv._ConvNd):
        w, g = m.weight, m.groups
        if m.in_channels % g or m.out_channels % g:
            return [f"{m.in_channels} -> {m.out_channels} channels do not divide by groups={g}"]
        want_w = (m.in_channels, m.out_channels // g) if m.transposed else (m.out_channels, m.in_channels // g)
        if tuple(w.shape[:2]) != want_w:
            return [f"weight {list(w.shape)} does not fit {m.in_channels} -> {m.out_channels} channels, groups={g}"]
        if m.bias is not None and m.bias.shape[0] != m.out_channels:
            return [f"bias of {m.bias.shape[0]} for {m.out_channels} output channels"]
    elif isinstance(m, nn.Linear):
        if tuple(m.weight.shape) != (m.out_features, m.in_features):
            return [f"weight {list(m.weight.shape)} for {m.in_features} -> {m.out_features} features"]
        if m.bias is not None and m.bias.shape[0] != m.out_features:
            return [f"bias of {m.bias.shape[0]} for {m.out_features} features"]
    elif isinstance(m, nn.modules.batchnorm._NormBase):
        sizes = {t.shape[0] for t in (m.weight, m.bias, m.running_mean, m.running_var) if t is not None}
        if sizes - {m.num_features}:
            return [f"statistics of {sorted(sizes)} for {m.num_features} features"]
    elif isinstance(m, nn.GroupNorm):
        if m.num_channels % m.num_groups:
            return [f"{m.num_channels} channels do not divide into {m.num_groups} groups"]
        if m.weight is not None and m.weight.shape[0] != m.num_channels:
            return [f"weight of {m.weight.shape[0]} for {m.num_channels} channels"]
    elif isinstance(m, nn.LayerNorm) and m.weight is not None:
        if tuple(m.weight.shape) != tuple(m.normalized_shape):
            return [f"weight {list(m.weight.shape)} for normalized shape {list(m.normalized_shape)}"]
    return []


# --- any architecture: strategies, each checked ----------------------------------------------------------------


@dataclass
class Attempt:
    """One pruning strategy tried on a copy of the model, and what came of it."""

    strategy: str
    passed: bool
    detail: str
    seconds: float
    left_alone: list[str] = field(default_factory=list)


def prune_any(model: nn.Module, example: torch.Tensor, *, macs_ratio: float, deadline: float | None = None,
              log: Callable[[str], None] = print) -> tuple[nn.Module | None, PruneResult | None, list[Attempt]]:
    """Prune a copy of ``model`` to ``macs_ratio`` of its MACs, trying strategies until one gives a sound model.

    Strategies, in order: every layer (attention by whole heads); attention left alone; then the groups that
    break the model when pruned, found one by one on a copy, left alone as well. Each result must pass
    :func:`check_pruned`. ``deadline`` (``time.monotonic()`` seconds) stops before a strategy starts late.

    Returns:
        (pruned copy, its PruneResult, every attempt) — the first two None when no strategy worked.
    """
    attempts: list[Attempt] = []
    heads = bool(attention_heads(model))
    plans: list[tuple[str, Callable[[], dict]]] = [("all layers" + (", attention by whole heads" if heads else ""),
                                                    lambda: {})]
    if heads or attention_modules(model):
        plans.append(("attention left alone", lambda: {"heads": False}))
    plans.append(("layers that break when pruned left alone", lambda: {
        "heads": False, "left_alone": tuple(unprunable_roots(model, example, deadline=deadline, log=log))}))
    for i, (name, options) in enumerate(plans):
        if deadline is not None and time.monotonic() > deadline:
            attempts.append(Attempt(name, False, "not tried: the time limit for pruning was reached", 0.0))
            break
        t0 = time.monotonic()
        # Each strategy but the last restarts without a runaway group for at most an equal part of the time
        # left: efficientvit_m0's cascaded attention ran away group after group and "all layers" took the whole
        # 150 s, so "attention left alone" was never tried.
        until = None if deadline is None else t0 + (deadline - t0) / (len(plans) - i)
        try:
            kwargs = options()
        except ConfigError as exc:
            attempts.append(Attempt(name, False, first_line(exc), time.monotonic() - t0))
            log(f"pruning ({name}): {first_line(exc)}")
            continue
        left = list(kwargs.pop("left_alone", ()))
        candidate, outcome = None, ""
        while candidate is None:
            candidate = copy.deepcopy(model)
            try:
                res = prune(candidate, example, macs_ratio=macs_ratio, left_alone=tuple(left), name_broken=True,
                            **kwargs)
            except _RunawayGroup as exc:  # leave that layer alone and try again
                candidate = None
                if isinstance(exc, _BrokenForward) and i < len(plans) - 1:
                    # The per-group probe of the last strategy finds what breaks more finely (resnest14d: the
                    # attention's fc2, where a broken forward names the whole split-attention block) and, on
                    # 2 cores, in less time than restarts would leave it.
                    outcome = first_line(exc)
                    break
                if exc.root in left:  # left alone already, and still failing: nothing more to learn here
                    outcome = first_line(exc)
                    break
                alike = same_place_in_every_block(model, exc.root) if exc.runaway and exc.root else [exc.root]
                if not any(n in left for n in alike[1:]):  # the first of its kind to run away: only itself
                    alike = alike[:1]
                left += [n for n in alike if n not in left]
                if (until is not None and time.monotonic() > until) or len(left) > 200:
                    outcome = (f"{first_line(exc)}, and this strategy's part of the time for pruning was used up "
                               f"({len(left)} group(s) left alone)")
                    break
            except ConfigError as exc:
                candidate, outcome = None, first_line(exc)
                break
        if candidate is None:
            attempts.append(Attempt(name, False, outcome, time.monotonic() - t0, left))
            log(f"pruning ({name}): {outcome}")
            continue
        attempts.append(Attempt(name, True, f"{res.macs_ratio:.2f}x MACs, {res.params_ratio:.2f}x parameters in "
                                            f"{res.steps} steps", time.monotonic() - t0, left))
        left += [n for n in res.left_alone if n not in left]  # groups torch-pruning could not size, skipped
        return candidate, PruneResult(res.dense_macs, res.dense_params, res.macs, res.params, res.steps, name,
                                      tuple(left)), attempts
    return None, None, attempts


class _RunawayGroup(Exception):
    """torch-pruning's dependency walk grew a group past any real size (it would not end), or pruning the group
    failed half-way: the model is inconsistent and pruning starts again with the group's root left alone."""

    def __init__(self, root: str, why: str = ""):
        super().__init__(f"torch-pruning could not prune the group of {root or 'a layer'} ({why})" if why else
                         f"torch-pruning's dependency walk from {root or 'a layer'} did not end")
        self.root, self.runaway = root, not why


class _BrokenForward(_RunawayGroup):
    """The pruned model's forward fails inside one module (:func:`failing_module`): the last strategy starts again
    with that module left alone whole; the earlier ones give way to the next strategy."""


@contextlib.contextmanager
def _bounded_groups(model: nn.Module, frozen: set | None = None) -> Iterator[set[str]]:
    """Make torch-pruning raise :class:`_RunawayGroup` instead of walking a dependency group forever, and never
    build or yield a group rooted at, or touching, a ``frozen`` module.

    On partial residuals (``x[:, :c] + shortcut``) torch-pruning 1.6 keeps revisiting the same layers with new
    index lists, so a group never closes (seen: > 15 min and 11 GB on one architecture). No real group holds
    more entries than a few times the model's layers, nor more channel indices than the model has channels
    many times over.

    Also: concatenations sized from autograd (:func:`_concat_mapping`); channel rounding per channel group
    (:func:`grouped_round_to`); a group whose importance cannot be
    computed (its indices run past a layer) skipped, its root's name added to the set this yields; a group that
    fails half-way through pruning raised as :class:`_RunawayGroup` (the caller starts again without it).
    """
    from torch_pruning.dependency import graph, group, index_mapping, shape_infer
    from torch_pruning.pruner.algorithms.base_pruner import BasePruner

    n_modules = sum(1 for _ in model.modules())
    channels = sum(int(p.shape[0]) for p in model.parameters() if p.dim() >= 1)
    entry_limit, index_limit = 4 * n_modules + 500, 16 * channels + 100_000
    names = {m: n for n, m in model.named_modules()}
    per_head = head_holders(model)
    frozen = frozen or set()
    skipped: set[str] = set()  # roots of the groups whose importance could not be computed (see below)
    original_add, original_get = group.Group.add_dep, graph.DependencyGraph.get_pruning_group
    original_all = graph.DependencyGraph.get_all_groups
    root: list[str] = [""]
    size: list[int] = [0]

    def add_dep(self, dep, idxs):
        size[0] += len(idxs)
        if len(self._group) > entry_limit or size[0] > index_limit:
            raise _RunawayGroup(root[0])
        return original_add(self, dep, idxs)

    def get_pruning_group(self, module, pruning_fn, idxs):
        root[0], size[0] = names.get(module, type(module).__name__), 0
        grp = original_get(self, module, pruning_fn, idxs)
        whole_heads_for_head_parameters(grp, per_head)
        return grp

    def get_all_groups(self, ignored_layers=(), root_module_types=(nn.modules.conv._ConvNd, nn.Linear)):
        for g in original_all(self, ignored_layers=list(ignored_layers) + list(frozen),
                              root_module_types=root_module_types):
            if not any(dep.target.module in frozen for dep, _ in g):
                yield g

    original_concat = index_mapping.update_concat_index_mapping
    original_split = index_mapping.update_split_index_mapping
    original_init = shape_infer.init_shape_information
    original_importance, original_prune = BasePruner.estimate_importance, group.Group.prune

    def estimate_importance(self, grp):
        # A group whose index lists run past a layer's channels (torch-pruning's index mapping got a partial
        # residual or a dual-path concatenation wrong: seen on DPN, RexNet, Res2Net) is skipped, as torch-pruning
        # skips a group without importance; its layers keep their width and pruning goes on with the others.
        try:
            return original_importance(self, grp)
        except (IndexError, RuntimeError, ValueError):
            skipped.add(names.get(grp[0].dep.target.module, ""))
            return None

    def prune_group(self, idxs=None, record_history=True):
        try:
            if idxs is None:  # (with idxs, torch-pruning builds the group again and prunes that one)
                prune_extra_parameters(self)
            return original_prune(self, idxs, record_history)
        except (IndexError, RuntimeError, ValueError) as exc:  # half-pruned: start again without this group
            raise _RunawayGroup(names.get(self[0].dep.target.module, ""),
                                f"{type(exc).__name__}: {first_line(exc)}") from exc

    with patched((group.Group, "add_dep", add_dep), (group.Group, "prune", prune_group),
                 (graph.DependencyGraph, "get_pruning_group", get_pruning_group),
                 (graph.DependencyGraph, "get_all_groups", get_all_groups),
                 (BasePruner, "estimate_importance", estimate_importance),
                 (index_mapping, "update_concat_index_mapping", concat_mapping(original_concat)),
                 (index_mapping, "update_reshape_index_mapping",
                  reshape_mapping(index_mapping.update_reshape_index_mapping)),
                 (index_mapping, "update_split_index_mapping", refresh_split_offsets(original_split)),
                 (shape_infer, "init_shape_information", sizes_from_autograd(original_init))), grouped_round_to():
        yield skipped


def unprunable_roots(model: nn.Module, example: torch.Tensor, *, deadline: float | None = None,
                     log: Callable[[str], None] = print) -> list[str]:
    """Names of the layers whose pruning group breaks the model: each group is pruned by a few channels on a
    copy and the copy checked (:func:`check_pruned`); a group that raises, runs away or breaks the check marks
    its root layer, and the search restarts on a fresh copy without it."""
    tp = require("torch_pruning", extra="train", why="structured pruning")
    keep = output_layers(model, example) + attention_modules(model)
    bad: list[str] = []
    tested: set[str] = set()
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise ConfigError("the time limit for pruning was reached while looking for layers that cannot be pruned")
        work = copy.deepcopy(model).eval()
        names = {m: n for n, m in work.named_modules()}
        frozen = {x for n in bad for x in work.get_submodule(n).modules()}
        kept = {x for m in keep for x in work.get_submodule(names_of(model, m)).modules()}
        try:
            with _bounded_groups(work), split_sites(work, example) as splits:
                dg = tp.DependencyGraph().build_dependency(work, example_inputs=example)
        except Exception as exc:
            raise ConfigError(f"torch-pruning cannot trace the model ({type(exc).__name__}: {first_line(exc)})") from None
        broke = None
        for m in list(dg.module2node):
            if not isinstance(m, nn.modules.conv._ConvNd | nn.Linear) or m in frozen or m in kept:
                continue
            name = names.get(m)
            if name is None or name in tested:
                continue
            pruner = dg.get_pruner_of_module(m)
            channels = pruner.get_out_channels(m) if pruner is not None else None
            if not channels or channels <= 8:
                tested.add(name)
                continue
            try:
                with _bounded_groups(work):
                    grp = dg.get_pruning_group(m, pruner.prune_out_channels, spread(channels, 8))
                    if any(d.target.module in frozen or d.target.module in kept
                           and dg.is_out_channel_pruning_fn(d.handler) for d, _ in grp):
                        tested.add(name)
                        continue
                    grp.prune()
                    sync_splits(splits, dg)
                problems = check_pruned(work, example, reference=model)
            except Exception as exc:
                problems = [first_line(exc)]
            tested.add(name)
            if problems:
                broke = (name, problems[0])
                break
        if broke is None:
            if bad:
                log(f"pruning: {len(bad)} layer(s) break when pruned and are left alone: "
                    + ", ".join(bad[:6]) + (" ..." if len(bad) > 6 else ""))
            return bad
        bad.append(broke[0])


def spread(channels: int, n: int) -> list[int]:
    """``n`` channel indices spread evenly over ``channels``: a probe that takes only the last channels passes a
    split hard-coded at the middle (CSP's ``x.split(self.expand_chs // 2)``), which the real pruning breaks."""
    return sorted({(2 * i + 1) * channels // (2 * n) for i in range(n)})


# --- saving a pruned model without pickling modules --------------------------------------------------------------

_SIMPLE = (int, float, bool, str, type(None))


def _simple(v) -> bool:
    return isinstance(v, _SIMPLE) or isinstance(v, list | tuple) and all(isinstance(x, _SIMPLE) for x in v)


def save_pruned(path: str | Path, model: nn.Module, dense: nn.Module) -> None:
    """Write a pruned model as tensors (``torch.save`` of plain tensors) plus the plain attributes pruning changed
    (channel counts, head counts, split sizes) as JSON beside it, so :func:`load_pruned` rebuilds it on a fresh
    dense model with ``weights_only`` loading: no pickled module is ever read back."""
    from edgekit.rundir import atomic_path

    path = Path(path)
    dense_modules = dict(dense.named_modules())
    attrs: dict[str, dict] = {}
    for name, m in model.named_modules():
        before = dense_modules.get(name)
        if before is None:
            raise DataError(f"pruning added a module '{name}'; cannot save the pruned model")
        changed = {k: v for k, v in vars(m).items() if not k.startswith("_") and _simple(v)
                   and vars(before).get(k) != v}
        if changed:
            attrs[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"format": "edgekit-pruned-1", "attributes": attrs}))


def load_pruned(model: nn.Module, path: str | Path) -> nn.Module:
    """Turn a freshly built dense ``model`` into the pruned one :func:`save_pruned` wrote (in place)."""
    from edgekit.models import load_weights_only

    path = Path(path)
    tensors = load_weights_only(path, what="pruned model")
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.with_suffix('.json')}: unreadable pruned-model description ({exc})") from None
    for name, attrs in meta.get("attributes", {}).items():
        m = model.get_submodule(name)
        for k, v in attrs.items():
            setattr(m, k, tuple(v) if isinstance(getattr(m, k, None), tuple) else v)
    for key, t in tensors.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = model.get_submodule(owner_name)
        current = getattr(owner, leaf, None)
        if isinstance(current, torch.Tensor) and tuple(current.shape) != tuple(t.shape):
            if isinstance(current, nn.Parameter):
                setattr(owner, leaf, nn.Parameter(torch.empty_like(t), requires_grad=current.requires_grad))
            else:
                owner._buffers[leaf] = torch.empty_like(t)
    model.load_state_dict(tensors, strict=True)
    return model
