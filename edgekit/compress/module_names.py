"""Finding layers by their dotted names (``stages.2.0.attn.mlp_add.fc2``), as pruning reports and leaves them."""

from __future__ import annotations

import re

from torch import nn

_BLOCK_NUMBER = re.compile(r"(^|\.)\d+(?=\.|$)")


def names_of(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``model``."""
    return next(n for n, m in model.named_modules() if m is module)


def same_place_in_every_block(model: nn.Module, root: str) -> list[str]:
    """``root``, then the layers of its type at the same place in every other repeated block: the name with each
    block number read as any number (stages.2.0.attn.mlp_add.fc2 -> stages.#.#.attn.mlp_add.fc2).

    Why: once a dependency walk has not ended in two copies of a block, it does so in every copy, and finding
    them one restart at a time used up gcresnet33ts' whole share of the time (16 global-context layers, then
    FAIL). Not after the first: leaving every block's ``mlp.fc2`` alone on inception_next_tiny, where one
    had run away, froze every residual stream (1.00x of the MACs instead of 0.48x).
    """
    modules = dict(model.named_modules())
    if root not in modules:
        return [root]
    kind, pattern = type(modules[root]), _BLOCK_NUMBER.sub(r"\1#", root)
    return [root] + [n for n, m in modules.items()
                     if n != root and type(m) is kind and _BLOCK_NUMBER.sub(r"\1#", n) == pattern]
