"""Split sizes that a forward pass reads from module attributes, kept in step with pruning.

Mixed-kernel and multi-scale blocks split their input with sizes held in a plain attribute, read again at
every call: timm's ``MixedConv2d`` runs ``torch.split(x, self.splits, 1)``, Res2Net's bottleneck
``torch.split(out, self.width, 1)``. torch-pruning narrows the layers on both sides of the split and tracks the
new sizes in its own graph node, but it cannot know the attribute, so the next forward splits by the stale
sizes and fails ("split_with_sizes expects split_sizes to sum exactly to 8"). Such layers used to be left
alone, which kept mixnet_s at 0.77x of its MACs and Res2Net at 0.88x instead of 0.5x.

:func:`split_sites` records, while torch-pruning traces the model, which module attribute each channel split
came from (a ``TorchFunctionMode`` sees the call and the module being run); :func:`sync_splits` writes
torch-pruning's sizes back into those attributes after every pruning step. :func:`refresh_split_offsets`
mends torch-pruning 1.6's split index mapping, which keeps the offsets of the unpruned model (its
``SplitPruner`` stores the new offsets on itself instead of on the split), so a second step would map
channels into the wrong part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_SPLITS = {torch.split, torch.Tensor.split, torch.Tensor.split_with_sizes}


@dataclass
class SplitSite:
    """A channel split whose sizes come from ``module.<attr>``, and the autograd node of the traced call."""

    module: nn.Module
    attr: str
    grad_fn: object
    parts: int = 0  # > 0: the split size is ``module.<attr> // parts`` (CSP's ``x.split(self.expand_chs // 2)``)


class _Seen(Exception):
    """The watched split was called with the watched value: enough of the forward pass has run."""


class _Recorder(TorchFunctionMode):
    """Records each channel split called while a module's forward runs; with ``watch`` = (module, value), raises
    :class:`_Seen` as soon as that module splits by that value instead."""

    def __init__(self, stack: list[nn.Module], sites: list[SplitSite], watch: tuple | None = None):
        super().__init__()
        self.stack, self.sites, self.watch = stack, sites, watch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SPLITS and self.stack and self.watch is not None:
            owner, value = self.watch
            sizes = _sizes_arg(args, kwargs)
            if self.stack[-1] is owner and (sizes is value or type(value) is _Computed and sizes == value.value):
                raise _Seen
        out = func(*args, **kwargs)
        if func in _SPLITS and self.stack and self.watch is None:
            self._record(args, kwargs, out)
        return out

    def _record(self, args, kwargs, out) -> None:
        x = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
        sizes = _sizes_arg(args, kwargs)
        dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or dim % x.dim() != 1 or not out:
            return
        grad_fn = getattr(out[0], "grad_fn", None)
        owner = self.stack[-1]
        public = {k: v for k, v in vars(owner).items() if not k.startswith("_")}
        if isinstance(sizes, int):  # the attributes holding this value (small ints are shared objects)
            attrs = [k for k, v in public.items() if type(v) is int and v == sizes]
        else:  # the list itself, else the attributes equal to it (a copy)
            attrs = [k for k, v in public.items() if v is sizes] or [
                k for k, v in public.items() if isinstance(v, list | tuple) and list(v) == list(sizes)]
        candidates = [(k, 0) for k in attrs]
        if isinstance(sizes, int) and len(out) > 1:  # or a size computed as attribute // parts
            candidates += [(k, len(out)) for k, v in public.items() if type(v) is int and v == len(out) * sizes]
        # Every candidate is recorded; confirmation (see split_sites) keeps only the attribute really read.
        if grad_fn is not None:
            self.sites += [SplitSite(owner, k, grad_fn, parts) for k, parts in candidates]


@dataclass(frozen=True)
class _Computed:
    """A split size watched by value: ``attribute // parts`` is a new int at every call."""

    value: int


def _sizes_arg(args, kwargs):
    if len(args) > 1:
        return args[1]
    return next((kwargs[k] for k in ("split_size_or_sections", "split_size", "split_sizes") if k in kwargs), None)


@contextlib.contextmanager
def running_modules(model: nn.Module) -> Iterator[list[nn.Module]]:
    """A list that holds, during any forward pass run inside, the modules whose forward is running (innermost
    last): forward hooks push and pop them. After an exception it still holds the modules it was raised in."""
    stack: list[nn.Module] = []

    def push(m, _inputs) -> None:
        stack.append(m)

    def pop(m, _inputs, _output) -> None:  # a hook that returned a value would replace the module's output
        if stack and stack[-1] is m:
            stack.pop()

    handles = [h for m in model.modules()
               for h in (m.register_forward_pre_hook(push), m.register_forward_hook(pop))]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def split_sites(model: nn.Module, example: torch.Tensor) -> Iterator[list[SplitSite]]:
    """Record the attribute-sized channel splits of every forward pass run inside (torch-pruning's trace).

    On leaving, each site is confirmed: its attribute is set to a new object and ``example`` run until the
    module splits by that object. An attribute that only happens to equal the sizes (``self.out_chs`` beside
    ``torch.split(x, self.expand_chs // 2, 1)``) is dropped, never rewritten.
    """
    sites: list[SplitSite] = []
    with running_modules(model) as stack:
        with _Recorder(stack, sites):
            yield sites
        sites[:] = [site for site in sites if _reads(model, example, site, stack)]


def _reads(model: nn.Module, example: torch.Tensor, site: SplitSite, stack: list[nn.Module]) -> bool:
    """Whether ``site.module`` really splits by ``site.attr``: the attribute is swapped for a fresh object of
    the same value and the forward pass watched for that very object."""
    old = getattr(site.module, site.attr)
    probe = int(str(old)) if isinstance(old, int) else type(old)(list(old))  # equal, but not the same object
    if isinstance(old, int) and -5 <= old <= 256:  # CPython shares these: swap in another value
        probe = old + 1000
    watched = probe
    if site.parts:  # the split size is computed from the attribute: watched by a value no channel count has
        probe = old + 100_003 * site.parts
        watched = _Computed(probe // site.parts)
    setattr(site.module, site.attr, probe)
    stack.clear()
    try:
        with torch.no_grad(), _Recorder(stack, [], watch=(site.module, watched)):
            model(example)
    except _Seen:
        return True
    except Exception:  # noqa: BLE001 - the forward broke elsewhere first: not confirmed
        return False
    finally:
        setattr(site.module, site.attr, old)
        stack.clear()
    return False


def sync_splits(sites: list[SplitSite], graph) -> None:
    """Write the split sizes torch-pruning tracks (``graph``: its DependencyGraph) into the recorded attributes.

    An integer attribute (equal parts) stays an integer while the parts stay equal and becomes a list of sizes
    otherwise (``torch.split`` takes both).
    """
    nodes = {id(n.grad_fn): n for n in graph.module2node.values() if getattr(n, "grad_fn", None) is not None}
    for site in sites:
        node = nodes.get(id(site.grad_fn))
        sizes = getattr(getattr(node, "module", None), "split_sizes", None)
        if not sizes:
            continue
        sizes = [int(s) for s in sizes]
        old = getattr(site.module, site.attr)
        if site.parts:
            if len(sizes) == site.parts and len(set(sizes)) == 1:
                setattr(site.module, site.attr, site.parts * sizes[0])
            continue
        if isinstance(old, int):
            new = sizes[0] if all(s == sizes[0] for s in sizes[:-1]) and sizes[-1] <= sizes[0] else sizes
        else:
            new = type(old)(sizes)
        setattr(site.module, site.attr, new)


def equal_part_splits(graph, sites: list[SplitSite]) -> dict[nn.Module, int]:
    """torch-pruning's split nodes whose parts must stay equal, and their number of parts: a channel split of a
    layer's output by one computed size (``x.chunk(2, 1)``, ``x.split(x.shape[1] // 2, 1)``, CSP's
    ``x.split(self.expand_chs // 2, 1)``; on tokens, a linear layer's output split along its last dimension:
    the gated MLP of EVA-02 and other SwiGLU transformers, ``x.chunk(2, dim=-1)``). Given as channel groups, they make torch-pruning remove the same
    positions from every part. A split by a plain attribute (Res2Net's ``self.width``) is left out:
    :func:`sync_splits` writes its sizes, whatever they become; unless a part is read by a grouped convolution
    (Res2NeXt: ``groups=8`` on each part), whose groups must then line up in every part alike: the parts times
    the convolution's groups are given as channel groups (torch-pruning took the convolution's 8 alone over all
    four parts, and part 0 came out 30 wide for a convolution that took 24).

    Channel groups are counted in the index space of the group's root, so the layer the split reads moves to
    the front of the graph's module order: its group, rooted there, spans all the parts. (Rooted at a layer
    after the split, it would span one part, and the groups would cut that part in two.) A split without such a
    layer before it (through normalisation, activations and residual adds only) is left out.
    """
    from torch_pruning import ops

    attributed = {id(s.grad_fn) for s in sites if not s.parts}
    out, producers = {}, []
    for node in list(graph.module2node.values()):
        fn = getattr(node, "grad_fn", None)
        if node.type != ops.OPTYPE.SPLIT or fn is None:
            continue
        call = _int_split(fn)
        if call is None:
            continue
        size, n, dim, rank = call
        conv_dim, linear_dim = dim == 1 and rank >= 3, dim == rank - 1  # channels-first maps, or tokens' last
        if not (conv_dim or linear_dim) or n % size or n // size < 2:
            continue
        groups = _grouped_reader(node, size)
        if id(fn) in attributed and groups == 1:
            continue
        producer = _producer(node, n)
        if producer is not None and (conv_dim if isinstance(producer, nn.modules.conv._ConvNd) else linear_dim):  # noqa: SLF001
            out[node.module] = n // size * groups
            producers.append(producer)
    if producers:
        first = {m: graph.module2node[m] for m in producers}
        graph.module2node = {**first, **{m: v for m, v in graph.module2node.items() if m not in first}}
    return out


def _producer(node, width: int) -> nn.Module | None:
    """A convolution or linear layer of ``width`` outputs that reaches ``node`` through layers that keep the
    channels as they are (normalisation, activation, residual adds): its group spans the whole input. None
    when there is none within a short walk (the input is a concatenation, a reshape, ...)."""
    for layer in _layers_through_passing(node.inputs, "inputs"):
        if getattr(layer, "out_channels", getattr(layer, "out_features", None)) == width:
            return layer
    return None


def _grouped_reader(split, width: int) -> int:
    """The groups of a grouped (not depthwise) convolution that reads a ``width``-channel part of ``split``
    through normalisation, activations and adds; 1 when none does."""
    return max([layer.groups for layer in _layers_through_passing(split.outputs, "outputs")
                if isinstance(layer, nn.modules.conv._ConvNd)  # noqa: SLF001 - torch's conv base
                and layer.in_channels == width and 1 < layer.groups < width], default=1)


def _layers_through_passing(start, direction: str) -> Iterator[nn.Module]:
    """The convolution and linear layers met walking the graph from ``start`` along ``direction`` ("inputs" or
    "outputs") through layers that keep the channels (normalisation, activations, adds), nearest first."""
    from torch_pruning import ops

    passing = {ops.OPTYPE.BN, ops.OPTYPE.PRELU, ops.OPTYPE.ELEMENTWISE, ops.OPTYPE.LN, ops.OPTYPE.GN, ops.OPTYPE.IN}
    queue, seen = list(start), set()
    while queue and len(seen) < 64:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, nn.modules.conv._ConvNd | nn.Linear):  # noqa: SLF001 - torch's conv base
            yield node.module
        elif node.type in passing:
            queue += getattr(node, direction)


def refresh_split_offsets(original):
    """torch-pruning's ``update_split_index_mapping``, mended twice (see the module docstring): each split's
    offsets are recomputed from its current sizes, and each consumer is mapped to the part it really reads.

    torch-pruning maps its i-th recorded consumer to the i-th part, but records consumers in the order its
    backward walk meets them, which is not the split's order (mixnet_s: part 0's convolution was narrowed by
    part 2's channels). The part a consumer reads is the ``output_nr`` autograd stores beside the split in the
    consumer's inputs.
    """
    from torch_pruning.dependency.index_mapping import _SplitIndexMapping

    def update(graph, node) -> None:
        sizes = getattr(getattr(node, "module", None), "split_sizes", None)
        if sizes is None or getattr(node.module, "offsets", None) is None:
            return original(graph, node)
        node.module.offsets = offsets = _offsets(sizes)
        original(graph, node)  # its checks decide whether this split is along the channels at all
        parts = [_part_read_by(node, out) for out in node.outputs]
        mapped = any(isinstance(d.index_mapping[0], _SplitIndexMapping) for d in node.dependencies)
        if None in parts or not (mapped or _splits_linear_features(node, offsets[-1])):
            return None
        for out, k in zip(node.outputs, parts, strict=True):
            for dep in node.dependencies:
                if dep.target is out:
                    dep.index_mapping[0] = _SplitIndexMapping(offset=offsets[k:k + 2], reverse=False)
            for dep in out.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _SplitIndexMapping(offset=offsets[k:k + 2], reverse=True)
        return None

    return update


def _splits_linear_features(node, width: int) -> bool:
    """Whether ``node`` splits a linear layer's output along its last dimension (its features, on tokens):
    torch-pruning maps only splits along dimension 1, and left the gated MLP of EVA-02 (``fc1(x).chunk(2,
    dim=-1)``) unmapped, so the next layer was asked for channels 512..1023 of its 512."""
    call = _split_dim(getattr(node, "grad_fn", None))
    if call is None:
        return False
    dim, rank = call
    return rank >= 3 and dim == rank - 1 and isinstance(_producer(node, width), nn.Linear)


def _split_dim(fn) -> tuple[int, int] | None:
    """The dimension (made non-negative) and input rank of a split, as autograd recorded them."""
    shape, dim = getattr(fn, "_saved_self_sym_sizes", None), getattr(fn, "_saved_dim", None)
    if shape is None or dim is None:
        return None
    if dim >= 2 ** 63:  # a negative dimension, as autograd stores it
        dim -= 2 ** 64
    return dim % len(shape), len(shape)


def sizes_from_autograd(original):
    """torch-pruning's ``init_shape_information``, then each split's sizes as autograd recorded them.

    torch-pruning reads ``_saved_split_sizes``, but an integer split (``SplitBackward0``) saves only its part
    size and the input's ``_saved_self_sym_sizes``, which it does not look for: it then guesses each part from
    the layer after it (Res2Net: [112, 14, 14, ...] for eight parts of 14).
    """

    from torch_pruning import ops

    def init(graph) -> None:
        original(graph)
        for node in graph.module2node.values():
            sizes = _recorded_sizes(getattr(node, "grad_fn", None)) if node.type == ops.OPTYPE.SPLIT else None
            if sizes is not None:
                node.module.split_sizes = sizes
                node.module.offsets = _offsets(sizes)

    return init


def _offsets(sizes) -> list[int]:
    """Where each part starts, and the end: [0, s0, s0 + s1, ...]."""
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + int(s))
    return offsets


def _recorded_sizes(fn) -> list[int] | None:
    if fn is None:
        return None
    if getattr(fn, "_saved_split_sizes", None) is not None:
        return [int(s) for s in fn._saved_split_sizes]  # noqa: SLF001 - autograd's record of the call
    call = _int_split(fn)
    if call is None:
        return None
    size, n = call[0], call[1]
    return [size] * (n // size) + ([n % size] if n % size else [])


def _int_split(fn) -> tuple[int, int, int, int] | None:
    """What autograd recorded of a split by one size (``SplitBackward0``: chunk, or split by an int): the part
    size, the length split, the dimension (made non-negative) and the input's rank; None for another node."""
    size, where = getattr(fn, "_saved_split_size", None), _split_dim(fn)
    if not size or where is None:
        return None
    dim, rank = where
    return int(size), int(fn._saved_self_sym_sizes[dim]), dim, rank  # noqa: SLF001 - autograd's record


def _part_read_by(split, consumer) -> int | None:
    """Which output of ``split`` the graph node ``consumer`` reads; None when none or several."""
    fn = getattr(consumer, "grad_fn", None)
    parts = {nr for f, nr in getattr(fn, "next_functions", ()) if f is not None and f is split.grad_fn}
    return parts.pop() if len(parts) == 1 else None
