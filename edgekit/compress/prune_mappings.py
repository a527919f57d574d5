"""torch-pruning 1.6's index mappings for concatenations and reshapes, mended where real nets broke them.

Each function wraps torch-pruning's own (``index_mapping.update_*_index_mapping``); :func:`edgekit.compress.prune.
_bounded_groups` puts the wrapped ones in place while a pruning run traces the model (see
:mod:`edgekit.compress.patching`).
"""

from __future__ import annotations

from collections.abc import Callable


def reshape_mapping(original: Callable) -> Callable:
    """torch-pruning's reshape index mapping, plus the channels-last merge it does not map (:func:`merged_last`).

    A reshape whose channel count torch-pruning infers as 0 (its graph walk reached the model's input) is left
    unmapped: it divided by that 0 and the whole trace failed (shvit_s1). Unmapped, the reshape is judged like any
    other by the checks after pruning."""

    def update(graph, node) -> None:
        try:
            original(graph, node)
        except ZeroDivisionError:
            return
        merged_last(graph, node)

    return update


class _MergedLastMapping:
    """Channel ``i`` of a ``C``-channel last dimension merged with ``k`` leading positions into ``k*C`` channels
    (``C`` fastest) is channels ``i, i+C, ..., i+(k-1)C``; back, channel ``j`` is ``j % C``."""

    def __init__(self, channels: int, parts: int, reverse: bool):
        self.channels, self.parts, self.reverse = channels, parts, reverse

    def __call__(self, idxs):
        from torch_pruning._helpers import _HybridIndex

        if self.reverse:
            return list(dict.fromkeys(_HybridIndex(idx=i.idx % self.channels, root_idx=i.root_idx) for i in idxs))
        return [_HybridIndex(idx=i.idx + m * self.channels, root_idx=i.root_idx)
                for m in range(self.parts) for i in idxs]


def merged_last(graph, node) -> bool:
    """Map a reshape that merges a channels-last tensor's trailing dimensions into its channels.

    Swin's patch merging gathers each 2x2 neighbourhood as ``x.reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4,
    2, 5).flatten(3)``: ``4C`` channels, ``C`` fastest. torch-pruning maps only 1-D and 4-D reshapes (and a 4-D
    flatten channel-major), so the merge passed indices through unchanged: the next LayerNorm lost 8 of its 384
    channels while its input lost 4x8 ("normalized_shape=[376] ... got input of size [1, 16, 16, 352]"). The
    sizes autograd saved tell the layout: the input's last dimension is its channel count ``C`` and the output's
    channel count is the product of the input's trailing dimensions. A 4-D input whose dimension 1 also has ``C``
    entries (channel-first or channel-last cannot be told apart) stays with torch-pruning."""
    from torch_pruning.dependency import constants, shape_infer

    fn = getattr(node, "grad_fn", None)
    sizes = getattr(fn, "_saved_self_sizes", None) or getattr(fn, "_saved_self_sym_sizes", None)
    if not sizes or len(sizes) < 3:
        return False
    try:
        sizes = [int(x) for x in sizes]
    except (TypeError, ValueError):
        return False
    channels = sizes[-1]
    if len(sizes) == 4 and sizes[1] == channels:
        return False

    def inferred(nodes, infer) -> int | None:
        for n in nodes:
            depth = [0]
            found = infer(graph, n, depth)
            if depth[0] > constants.MAX_RECURSION_DEPTH:
                return None
            if found is not None:
                return found
        return None

    out = inferred(node.outputs, shape_infer.infer_in_channels_recursively)
    if out is None or out <= channels or out % channels or inferred(
            node.inputs, shape_infer.infer_out_channels_recursively) != channels:
        return False
    product = 1
    for size in reversed(sizes):
        product *= size
        if product >= out:
            break
    if product != out:
        return False
    for in_node in node.inputs:
        for dep in node.dependencies:
            if dep.target == in_node:
                dep.index_mapping[0] = _MergedLastMapping(channels, out // channels, reverse=True)
        for dep in in_node.dependencies:
            if dep.target == node:
                dep.index_mapping[0] = _MergedLastMapping(channels, out // channels, reverse=False)
    return True


def concat_mapping(original: Callable) -> Callable:
    """torch-pruning's concatenation index mapping, given the sizes it concatenates as autograd recorded them.

    torch-pruning infers each input's channel count by walking the graph; on dual-path nets (DPN: concatenations
    of slices of concatenations) the walk hits its depth limit, returns None, and ``sum`` of the sizes raises a
    TypeError that stops the whole dependency graph. The concatenation's own autograd node knows every input's
    shape exactly (``next_functions`` metadata); a size still unknown leaves the concatenation unmapped (torch-
    pruning's own choice for one it cannot size), and the checks after pruning judge the result.
    """

    def update(graph, cat_node) -> None:
        module = getattr(cat_node, "module", None)
        if module is not None and getattr(module, "concat_sizes", None) is None:
            module.concat_sizes = concat_sizes(cat_node)
        if module is not None and module.concat_sizes is not None and None in module.concat_sizes:
            return
        original(graph, cat_node)

    return update


def concat_sizes(cat_node) -> list[int] | None:
    """The channel count of each input of a ``torch.cat`` along dimension 1, from its autograd node; None when
    the inputs torch-pruning sees are not exactly the ones autograd recorded, or the concatenation is on another
    dimension."""
    fn = getattr(cat_node, "grad_fn", None)
    dim = getattr(fn, "_saved_dim", None)
    if fn is None or dim is None:
        return None
    if dim >= 2 ** 63:  # a negative dimension, as autograd stores it
        dim -= 2 ** 64
    shapes = []
    for f, i in fn.next_functions:
        if f is None:
            return None
        try:
            shapes.append(tuple(f._input_metadata[i].shape))  # noqa: SLF001 - autograd's record of the input
        except (AttributeError, IndexError, RuntimeError):
            return None
    if not shapes or len(shapes) != len(getattr(cat_node, "inputs", ())) or dim % len(shapes[0]) != 1:
        return None
    return [int(s[1]) for s in shapes]
