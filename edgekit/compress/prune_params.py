"""Parameters that torch-pruning slices wrongly or not at all.

torch-pruning slices a convolution's ``weight`` and ``bias`` (and a linear layer's); a subclass that keeps more
parameters along the output channels keeps them whole. timm's normaliser-free nets (NF-ResNet, NFNet) use
``ScaledStdConv2d``, whose ``gain`` (one value per output channel) scales the standardised weight in
``F.batch_norm(..., weight=(self.gain * self.scale).view(-1))``: after pruning its forward fails ("weight should
contain 56 elements not 64") and the whole stem was left alone (nf_resnet26 did not prune at all).

:func:`prune_extra_parameters` slices every such parameter with the channels the group removes from its layer.

An attention module's parameters with one entry per *head* (Swin's ``relative_position_bias_table``, shape
``((2W-1)^2, num_heads)``, added to the attention scores) are found by torch-pruning's graph and put in the head's
group, but they receive the group's *channel* indices: removing one 32-wide head asked to remove 32 of 3 entries,
the group was refused, the head count was lowered anyway and the forward failed ("size of tensor a (2) must match
the size of tensor b (3)"). :func:`whole_heads_for_head_parameters` turns those channel indices into head indices.
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


def head_holders(model: nn.Module) -> list[nn.Module]:
    """The attention modules (an integer ``num_heads``) that hold parameters of their own."""
    return [m for m in model.modules() if isinstance(getattr(m, "num_heads", None), int)
            and any(True for _ in m.parameters(recurse=False))]


def _head_dim(attention: nn.Module) -> int | None:
    if isinstance(getattr(attention, "head_dim", None), int) and attention.head_dim > 0:
        return attention.head_dim
    qkv = getattr(attention, "qkv", None)
    if isinstance(qkv, nn.Linear) and qkv.out_features % (3 * attention.num_heads) == 0:
        return qkv.out_features // (3 * attention.num_heads)
    return None


def whole_heads_for_head_parameters(group, holders: list[nn.Module]) -> None:
    """In a group torch-pruning has just built, give each per-head parameter of an attention module in
    ``holders`` (one whose pruned dimension has ``num_heads`` entries) the heads its channel indices cover, when
    they cover whole heads. Anything else is left as torch-pruning built it (and its checks refuse what does not
    fit). Owners are looked up afresh: pruning a parameter replaces the tensor object."""
    from torch_pruning._helpers import _HybridIndex, to_plain_idxs

    owners = {p: m for m in holders for p in m.parameters(recurse=False)}

    graph = group._DG  # noqa: SLF001 - the graph that knows each parameter's pruned dimension
    for k, (dep, idxs) in enumerate(list(group)):
        attention = owners.get(dep.target.module) if isinstance(dep.target.module, nn.Parameter) else None
        if attention is None or graph.get_out_channels(dep.target.module) != attention.num_heads:
            continue
        head_dim, plain = _head_dim(attention), [int(i) for i in to_plain_idxs(idxs)]
        if head_dim is None or not plain:
            continue
        heads = sorted({i // head_dim for i in plain})
        if heads[-1] >= attention.num_heads or len(plain) != len(set(plain)) or len(plain) != len(heads) * head_dim:
            continue
        roots = {}
        for i, item in zip(plain, idxs, strict=True):
            roots.setdefault(i // head_dim, getattr(item, "root_idx", i))
        group[k] = type(group[k])(dep=dep, idxs=[_HybridIndex(idx=h, root_idx=roots[h]) for h in heads])
