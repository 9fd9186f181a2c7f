"""QCFS: the quantization-clip-floor-shift activation for low-latency conversion
(Bu et al., ICLR 2022, "Optimal ANN-SNN conversion for high-accuracy and
ultra-low-latency spiking neural networks").

The ANN is trained with, instead of ReLU,

    a = lam * clip(floor(x L / lam + 1/2) / L, 0, 1)

with ``L`` quantization levels and a learnable threshold ``lam`` (one per layer).
The floor is trained with a straight-through estimator (its derivative taken as
1): ``d a / d x = 1`` inside the clip and 0 outside; ``d a / d lam = q - x / lam``
inside (``q`` the quantized level ``a / lam``), 1 above the clip, 0 below.

An IF neuron with threshold ``lam``, reset by subtraction and membrane starting at
``lam / 2`` (the "shift"), driven by a constant ``x`` for ``T = L`` steps, emits
exactly ``clip(floor(x L / lam + 1/2), 0, L)`` spikes, so its mean output
``lam * spikes / L`` *is* the QCFS activation: the rate-coded network of a QCFS ANN
(:func:`qcfs_network`, the ``rate`` coding with checks) is near-lossless at a
handful of steps.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch

from .calibrate import Calibration
from .graph import ConversionError, Kind, LayerGraph
from .network import SpikingNetwork
from .rate import rate_network

__all__ = ["QCFS", "qcfs_model", "qcfs_network"]


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class QCFS(torch.nn.Module):
    """``a = lam * clip(floor(x L / lam + 1/2) / L, 0, 1)`` (see the module docstring).

    Args:
        levels: ``L``, quantization levels (>= 1); the SNN needs about ``L`` steps.
        scale: initial ``lam`` (> 0), learnable.
    """

    conversion_activation = True

    def __init__(self, levels: int = 8, scale: float = 8.0) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or not scale > 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.levels = levels
        self.lam = torch.nn.Parameter(torch.tensor(float(scale)))

    @property
    def scale(self) -> torch.Tensor:
        """``lam``, the threshold of the IF neuron that replaces this activation."""
        return self.lam.detach().abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.lam.abs()
        q = _FloorSTE.apply(x * self.levels / lam + 0.5) / self.levels
        return lam * q.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lam={self.scale.item():.4g}"


def qcfs_model(model: torch.nn.Module, levels: int = 8, scale: float = 8.0) -> torch.nn.Module:
    """A copy of ``model`` with every ``torch.nn.ReLU`` module replaced by a
    :class:`QCFS` (functional ``relu`` calls cannot be replaced and are left alone).

    Raises:
        TypeError: ``model`` is not a module.
        ValueError: ``levels`` or ``scale`` out of range, or no ReLU module to replace.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    QCFS(levels, scale)  # check the settings before copying the model
    model = copy.deepcopy(model)
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, QCFS(levels, scale))
                replaced += 1
    if replaced == 0:
        raise ValueError(f"{type(model).__name__} has no torch.nn.ReLU modules to replace by QCFS")
    return model


def qcfs_network(
    graph: LayerGraph,
    calibration: Calibration,
    *,
    initial_membrane: float = 0.5,
    fold_scales: bool = True,
    info: dict | None = None,
) -> SpikingNetwork:
    """The rate-coded network of a QCFS-trained graph (every activation must be a
    :class:`QCFS`; its ``lam`` is the threshold, the membrane starts at ``lam / 2``)."""
    for node in graph.nodes:
        if node.kind is Kind.RELU or (node.kind is Kind.ACTIVATION and not isinstance(node.module, QCFS)):
            raise ConversionError(
                f"{node.where}: the qcfs coding needs every activation to be a QCFS (train the ANN "
                f"with spikeflow.convert.qcfs.qcfs_model); use the rate coding for plain ReLUs"
            )
    return rate_network(graph, calibration, initial_membrane=initial_membrane, fold_scales=fold_scales, info=info)
