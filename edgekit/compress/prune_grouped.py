"""torch-pruning's channel rounding, mended for layers pruned by channel groups (grouped convolutions).

torch-pruning 1.6 prunes a group that reaches a grouped convolution (DPN, ResNeXt, RegNet: ``groups=32``)
the same way in every channel group: it ranks the ``channels / groups`` positions of one group and removes
each chosen position from all groups. Its ``round_to`` then rounds that per-group count as if it were the
layer's whole width: on dpn68 (256 channels, 32 groups of 8) one step's "remove 1 of 8" became "remove 8 of
8 in every group", the whole layer, and a 512-wide stage lost half its channels in the first of 40 steps.
Stages whose groups hold 8 channels were then never pruned at all, and dpn68 stopped at 0.61x of its MACs.

:func:`grouped_round_to` rounds what is left per group instead, so that the layer's remaining width
(``groups x left``) is a multiple of ``round_to``, and never removes a group's last positions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from edgekit.compress.patching import patched


@contextlib.contextmanager
def grouped_round_to() -> Iterator[None]:
    """Inside: torch-pruning's ``_round_to`` knows each group's channel groups (see the module docstring)."""
    from torch_pruning.dependency.graph import DependencyGraph
    from torch_pruning.pruner.algorithms.base_pruner import BasePruner

    original_groups, original_round = BasePruner._get_channel_groups, BasePruner._round_to  # noqa: SLF001
    original_out, original_in = DependencyGraph.get_out_channels, DependencyGraph.get_in_channels
    groups_of: dict[int, int] = {}  # id(root module) -> its group's channel groups, as the pruner ranked it
    last: list[object] = [None]  # the module whose width the pruner read last: the one it rounds next

    def get_channel_groups(self, group) -> int:
        n = original_groups(self, group)
        groups_of[id(group[0].dep.target.module)] = n
        return n

    def get_out_channels(self, module):
        last[0] = module
        return original_out(self, module)

    def get_in_channels(self, module):
        last[0] = module
        return original_in(self, module)

    def round_to(self, n_pruned, current_channels, multiple):
        groups = groups_of.get(id(last[0]), 1)
        if groups <= 1 or not current_channels or current_channels % groups:
            return original_round(self, n_pruned, current_channels, multiple)
        return per_group_pruned(n_pruned, current_channels // groups, groups, multiple)

    with patched((BasePruner, "_get_channel_groups", get_channel_groups), (BasePruner, "_round_to", round_to),
                 (DependencyGraph, "get_out_channels", get_out_channels),
                 (DependencyGraph, "get_in_channels", get_in_channels)):
        yield


def per_group_pruned(n_pruned: int, size: int, groups: int, multiple: int) -> int:
    """Positions to remove from each of ``groups`` channel groups of ``size``, about ``n_pruned`` of them, so that
    ``groups x (size - removed)`` is a multiple of ``multiple`` and at least one step of positions is left."""
    step = multiple // math.gcd(multiple, groups) if multiple else 1
    if size <= step:
        return 0
    left = size - n_pruned
    left = max(step, left - left % step)
    return max(size - left, 0)
