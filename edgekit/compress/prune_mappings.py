"""torch-pruning 1.6's index mappings for concatenations and reshapes, mended where real nets broke them.

Each function wraps torch-pruning's own (``index_mapping.update_*_index_mapping``); :func:`edgekit.compress.prune.
_bounded_groups` puts the wrapped ones in place while a pruning run traces the model (see
:mod:`edgekit.compress.patching`).
"""

from __future__ import annotations

from collections.abc import Callable


def reshape_mapping(original: Callable) -> Callable:
    """torch-pruning's reshape index mapping, leaving unmapped a reshape whose channel count it infers as 0 (its
    graph walk reached the model's input): it divided by that 0 and the whole trace failed (shvit_s1). Unmapped,
    the reshape is judged like any other by the checks after pruning."""

    def update(graph, node) -> None:
        try:
            return original(graph, node)
        except ZeroDivisionError:
            return None

    return update


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
