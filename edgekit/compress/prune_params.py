"""Per-channel parameters that torch-pruning does not know a layer has.

torch-pruning slices a convolution's ``weight`` and ``bias`` (and a linear layer's); a subclass that keeps more
parameters along the output channels keeps them whole. timm's normaliser-free nets (NF-ResNet, NFNet) use
``ScaledStdConv2d``, whose ``gain`` (one value per output channel) scales the standardised weight in
``F.batch_norm(..., weight=(self.gain * self.scale).view(-1))``: after pruning its forward fails ("weight should
contain 56 elements not 64") and the whole stem was left alone (nf_resnet26 did not prune at all).

:func:`prune_extra_parameters` slices every such parameter with the channels the group removes from its layer.
"""

from __future__ import annotations

import torch
from torch import nn


def prune_extra_parameters(group) -> None:
    """Before ``group`` (a torch-pruning group) is pruned: remove the pruned output channels from each of its
    convolution and linear layers' own parameters other than ``weight`` and ``bias`` whose first dimension has
    one entry per output channel."""
    from torch_pruning._helpers import to_plain_idxs

    graph = group._DG  # noqa: SLF001 - the graph that decides which handlers prune output channels
    for dep, idxs in group:
        layer = dep.target.module
        if not isinstance(layer, nn.modules.conv._ConvNd | nn.Linear) or not graph.is_out_channel_pruning_fn(dep.handler):  # noqa: SLF001
            continue
        width = layer.out_channels if isinstance(layer, nn.modules.conv._ConvNd) else layer.out_features  # noqa: SLF001
        drop = {int(i) for i in to_plain_idxs(idxs)}
        keep = torch.tensor([i for i in range(width) if i not in drop], dtype=torch.long)
        for name, param in list(layer.named_parameters(recurse=False)):
            if name in ("weight", "bias") or param.dim() == 0 or param.shape[0] != width:
                continue
            setattr(layer, name, nn.Parameter(param.data.index_select(0, keep).clone(),
                                              requires_grad=param.requires_grad))
