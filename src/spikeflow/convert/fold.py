"""The second stage: fold every BatchNorm into the Linear or Conv before it.

In eval mode BatchNorm is the per-channel affine map
``y = gamma * (x - mean) / sqrt(var + eps) + beta``; after a layer ``x = W u + b``
it folds into that layer as ``W' = s W`` and ``b' = s (b - mean) + beta`` with
``s = gamma / sqrt(var + eps)`` (per output channel). A BatchNorm that follows
anything else (a pooling, an addition) stays as a stateless affine layer: it is
linear, so every coding scheme passes it through unchanged.
"""

from __future__ import annotations

import torch

from .graph import Kind, LayerGraph

__all__ = ["fold_batchnorm", "batchnorm_affine"]


def batchnorm_affine(bn: torch.nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel such that ``bn(x) = scale * x + shift`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


@torch.no_grad()
def fold_batchnorm(graph: LayerGraph) -> LayerGraph:
    """A copy of ``graph`` with every BatchNorm that directly follows a Linear or Conv
    (and is that layer's only user) folded into it; the others are kept."""
    graph = graph.copy()
    for node in list(graph.nodes):
        if node.kind is not Kind.BATCHNORM:
            continue
        source = graph[node.inputs[0]]
        if source.kind not in (Kind.LINEAR, Kind.CONV) or len(graph.users(source.name)) != 1:
            continue
        layer = source.module
        scale, shift = batchnorm_affine(node.module)
        if scale.numel() != layer.weight.shape[0]:
            raise ValueError(
                f"{node.where}: BatchNorm over {scale.numel()} channels follows {source.name!r} "
                f"with {layer.weight.shape[0]} outputs"
            )
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        weight = layer.weight.double() * scale.view(shape)
        bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
        bias = bias * scale + shift
        layer.weight.copy_(weight.to(layer.weight.dtype))
        if layer.bias is None:
            layer.bias = torch.nn.Parameter(bias.to(layer.weight.dtype))
        else:
            layer.bias.copy_(bias.to(layer.bias.dtype))
        graph.remove(node.name)
    return graph
