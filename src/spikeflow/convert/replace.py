"""The last two stages: replace the ANN's activations by spiking layers, then
finalize (fold each neuron's spike value into the weights that read it).

:func:`to_spiking` walks a calibrated :class:`~spikeflow.convert.graph.LayerGraph`
and builds a :class:`~spikeflow.convert.network.SpikingNetwork`: weighted and
pooling layers are kept (run on all time steps at once), every activation becomes
what the coding scheme makes of it (neurons, then a
:class:`~spikeflow.convert.layers.Scale` by the value one spike stands for), every
max pooling the coding's spiking form of it.

:func:`finalize` then moves each ``Scale`` through pooling and Flatten layers and
folds it into the Linear or Conv that reads the spikes (``W'[:, c] = lambda_c W[:, c]``),
so that those layers see plain 0/1 spikes, as on neuromorphic hardware; a scale
that feeds an addition, a concatenation or the output is kept.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch

from .. import nn as snn
from ..nn._layers import Flatten, TimeDistributed
from .graph import ConversionError, Kind, LayerGraph, Node
from .layers import Scale
from .network import SpikingNetwork, Step

__all__ = ["NeuronFactory", "to_spiking", "finalize"]

#: ``(activation node, scale) -> [(name suffix, module, step attrs), ...]``: the layers
#: an activation becomes, in order (the last one's output is what later layers read).
NeuronFactory = Callable[[Node, torch.Tensor], list]


def stateless_layer(node: Node) -> torch.nn.Module:
    module = copy.deepcopy(node.module).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return TimeDistributed(module)


def to_spiking(
    graph: LayerGraph,
    scales: dict[str, torch.Tensor],
    neuron: NeuronFactory,
    maxpool: Callable[[Node], torch.nn.Module],
    info: Optional[dict] = None,
) -> SpikingNetwork:
    """Build the spiking network of ``graph`` (see the module docstring).

    Args:
        graph: folded ANN graph.
        scales: activation scale by activation node (from calibration).
        neuron: what each activation becomes.
        maxpool: what each max pooling becomes.
        info: facts saved with the network.

    Raises:
        TypeError: ``graph``, ``scales``, ``neuron`` or ``maxpool`` of the wrong type.
        ConversionError: an activation without a scale, or a node with no spiking form.
    """
    if not isinstance(graph, LayerGraph):
        raise TypeError(f"graph must be a LayerGraph (from spikeflow.convert.trace), got {type(graph).__name__}")
    if not isinstance(scales, dict):
        raise TypeError(f"scales must be a dict {{activation node: scale}} (Calibration.scales), got {type(scales).__name__}")
    for name, factory in (("neuron", neuron), ("maxpool", maxpool)):
        if not callable(factory):
            raise TypeError(f"{name} must be callable (node -> module), got {type(factory).__name__}")
    steps: list[Step] = []
    layers: dict[str, torch.nn.Module] = {}
    alias: dict[str, str] = {}

    def inputs(node: Node) -> list[str]:
        return [alias.get(i, i) for i in node.inputs]

    for node in graph.nodes:
        kind = node.kind
        if kind is Kind.INPUT:
            steps.append(Step(node.name, "input", []))
        elif kind is Kind.OUTPUT:
            steps.append(Step(node.name, "output", inputs(node)))
        elif kind in (Kind.ADD, Kind.CAT):
            steps.append(Step(node.name, kind.value, inputs(node), dict(node.attrs)))
        elif kind in (Kind.RELU, Kind.ACTIVATION):
            if node.name not in scales:
                raise ConversionError(f"{node.where}: no activation scale (calibrate the graph first)")
            source = inputs(node)
            for suffix, module, attrs in neuron(node, scales[node.name]):
                name = node.name + suffix
                steps.append(Step(name, "layer", source, dict(attrs)))
                layers[name] = module
                source = [name]
            alias[node.name] = source[0]
        else:
            if kind in (Kind.LINEAR, Kind.CONV, Kind.BATCHNORM, Kind.AVGPOOL):
                module = stateless_layer(node)
            elif kind is Kind.FLATTEN:
                module = Flatten()
            elif kind is Kind.MAXPOOL:
                module = maxpool(node)
            else:  # pragma: no cover - every kind is handled above
                raise ConversionError(f"{node.where}: no spiking form of {kind.value}")
            steps.append(Step(node.name, "layer", inputs(node)))
            layers[node.name] = module
    return SpikingNetwork(steps, layers, info).eval()


def _inner(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, TimeDistributed) else module


@torch.no_grad()
def _fold_into(layer: torch.nn.Module, scale: torch.Tensor) -> bool:
    """Multiply the input columns of a Linear / Conv by ``scale`` (0-d or per input
    channel); False if the shapes do not match."""
    weight = layer.weight
    if scale.dim() == 0:
        weight.mul_(scale.to(weight.dtype))
        return True
    if isinstance(layer, torch.nn.Linear):
        features = weight.shape[1]
        if features % scale.numel():
            return False
        per = features // scale.numel()  # a per-channel scale before Flatten
        weight.mul_(scale.repeat_interleave(per).to(weight.dtype).view(1, -1))
        return True
    if getattr(layer, "groups", 1) != 1 or weight.shape[1] != scale.numel():
        return False
    weight.mul_(scale.to(weight.dtype).view((1, -1) + (1,) * (weight.dim() - 2)))
    return True


def finalize(net: SpikingNetwork) -> SpikingNetwork:
    """Fold every :class:`Scale` that can be folded into the weights reading it (in
    place; returns ``net``).

    Raises:
        TypeError: ``net`` is not a SpikingNetwork.
    """
    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"net must be a SpikingNetwork, got {type(net).__name__}")
    changed = True
    while changed:
        changed = False
        for step in list(net.steps):
            if step.op != "layer" or not isinstance(net.layer(step.name), Scale):
                continue
            users = [s for s in net.steps if step.name in s.inputs]
            if len(users) != 1 or users[0].op != "layer":
                continue
            user = users[0]
            target = net.layer(user.name)
            inner = _inner(target)
            scale = net.layer(step.name).scale
            if isinstance(inner, Flatten):
                # source -> scale -> flatten -> linear: fold into the linear, keep the flatten
                after = [s for s in net.steps if user.name in s.inputs]
                if len(after) != 1 or after[0].op != "layer":
                    continue
                linear = _inner(net.layer(after[0].name))
                if not isinstance(linear, torch.nn.Linear) or not _fold_into(linear, scale):
                    continue
                user.inputs = list(step.inputs)
                _drop(net, step)
                changed = True
            elif isinstance(inner, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                if not _fold_into(inner, scale):
                    continue
                user.inputs = list(step.inputs)
                _drop(net, step)
                changed = True
            elif _commutes(inner, scale):
                # swap: source -> scale -> user  becomes  source -> user -> scale
                user_inputs, users_of_user = list(step.inputs), [s for s in net.steps if user.name in s.inputs]
                scale_index, user_index = net.steps.index(step), net.steps.index(user)
                step.inputs, user.inputs = [user.name], user_inputs
                for s in users_of_user:
                    s.inputs = [step.name if i == user.name else i for i in s.inputs]
                net.steps.pop(scale_index)
                net.steps.insert(user_index, step)  # now right after the user
                changed = True
        _reindex(net)
    return net


def _commutes(module: torch.nn.Module, scale: torch.Tensor) -> bool:
    """Whether ``module(scale * x) == scale * module(x)`` for this (positive) scale."""
    from .layers import SpikingMaxPool

    if isinstance(module, (SpikingMaxPool, torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.AvgPool1d,
                           torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)):
        return True
    return False


def _drop(net: SpikingNetwork, step: Step) -> None:
    net.steps.remove(step)
    del net.layers[step.name.replace(".", "_")]


def _reindex(net: SpikingNetwork) -> None:
    net._last_use = {}
    for index, step in enumerate(net.steps):
        for i in step.inputs:
            net._last_use[i] = index
