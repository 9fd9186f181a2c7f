"""Rate coding (Rueckauer et al. 2017): each ReLU becomes integrate-and-fire neurons.

A neuron standing in for an activation with scale ``lambda`` is an IF neuron
(:class:`spikeflow.nn.IF`, no leak) with threshold ``lambda`` and reset by
subtraction, followed by a :class:`~spikeflow.convert.layers.Scale` by ``lambda``
(what one spike is worth; :func:`~spikeflow.convert.replace.finalize` folds it into
the next layer's weights). With a constant input current ``z`` (the ANN's
pre-activation, biases included, in the ANN's units)::

    v[t] = v[t-1] + z - lambda * s[t-1],   s[t] = H(v[t] - lambda)

so ``lambda * (spikes up to t) / t -> clip(z, 0, lambda)`` with an error below
``lambda / t``. Starting the membrane at ``lambda / 2`` (``initial_membrane=0.5``)
rounds instead of flooring and halves that error (Rueckauer et al. 2017; Bu et al.
2022). Max pooling gates spikes by accumulated input
(:class:`~spikeflow.convert.layers.SpikingMaxPool`). The network's output is the
last layer's input current at every step; its running mean over ``t`` estimates the
ANN's output.
"""

from __future__ import annotations

import numbers

import torch

from .. import nn as snn
from .calibrate import Calibration, check_builder_inputs
from .graph import LayerGraph, Node
from .layers import Scale, SpikingMaxPool
from .network import SpikingNetwork
from .replace import finalize, to_spiking

__all__ = ["neuron_shape", "rate_network"]


def neuron_shape(scale: torch.Tensor, rank: int | None) -> tuple[int, ...]:
    """The parameter shape of a neuron layer with one threshold per channel (``scale``
    ``[C]``) on inputs ``[B, C, *spatial]`` of ``rank`` dimensions; ``()`` per layer."""
    if scale.dim() == 0:
        return ()
    if rank is None:
        raise ValueError("a per-channel threshold needs the activation's rank (calibrate on data)")
    return (scale.numel(),) + (1,) * (rank - 2)


def rate_network(
    graph: LayerGraph,
    calibration: Calibration,
    *,
    initial_membrane: float = 0.5,
    fold_scales: bool = True,
    info: dict | None = None,
) -> SpikingNetwork:
    """The rate-coded spiking network of a folded, calibrated graph.

    Args:
        graph: from :func:`~spikeflow.convert.fold.fold_batchnorm`.
        calibration: from :func:`~spikeflow.convert.calibrate.calibrate`.
        initial_membrane: membrane at ``t = 0`` as a fraction of the threshold, in [0, 1).
        fold_scales: fold each spike's value into the next layer's weights.

    Raises:
        TypeError: ``graph`` or ``calibration`` of the wrong type.
        ValueError: ``initial_membrane`` out of range.
    """
    check_builder_inputs("rate_network", graph, calibration)
    if (
        isinstance(initial_membrane, bool)
        or not isinstance(initial_membrane, numbers.Real)
        or not 0.0 <= float(initial_membrane) < 1.0
    ):
        raise ValueError(f"initial_membrane must be a number in [0, 1), got {initial_membrane!r}")

    def neuron(node: Node, scale: torch.Tensor) -> list:
        shape = neuron_shape(scale, calibration.ranks.get(node.name))
        threshold = scale.reshape(shape) if shape else scale
        layer = snn.IF(threshold=threshold.clone(), shape=shape, reset="subtract")
        return [("", layer, {"initial_membrane": float(initial_membrane)}), (".scale", Scale(scale), {})]

    net = to_spiking(graph, calibration.scales, neuron, lambda node: SpikingMaxPool(node.module), info)
    return finalize(net) if fold_scales else net
