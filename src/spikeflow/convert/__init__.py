"""Convert trained ANNs into spiking networks.

A staged pipeline over a copy of the model (torch itself is never patched):

1. **trace** (:func:`trace`): capture the model with ``torch.fx`` as a
   :class:`LayerGraph` of known layers; anything else is an error naming the node.
2. **fold** (:func:`fold_batchnorm`): BatchNorm into the Linear / Conv before it.
3. **calibrate** (:func:`calibrate`): the scale of every activation from data
   (maximum or percentile, per layer or per channel).
4. **replace**: activations become spiking neurons, max pooling its spiking form,
   as the coding scheme says (:data:`CODINGS`).
5. **finalize**: spike values folded into the weights that read them.

:func:`convert` runs all five::

    from spikeflow.convert import convert, simulate
    snn = convert(ann, calibration_images, coding="rate")
    logits = simulate(snn, test_images, timesteps=[8, 16, 32])   # {T: [B, classes]}
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional, Union

import torch

from .asn import ASNActivation, asn_model, asn_network
from .calibrate import Calibration, Normalization, activation_nodes, calibrate, check_calibration_options
from .fold import batchnorm_affine, fold_batchnorm
from .graph import SUPPORTED, ConversionError, Kind, LayerGraph, Node, trace
from .layers import Scale, SpikingMaxPool
from .network import SpikingNetwork, Step, register_layer
from .onnx import load_onnx
from .qcfs import QCFS, qcfs_model, qcfs_network
from .rate import rate_network
from .replace import finalize, to_spiking
from .simulate import simulate
from .ttfs import clamp_activations, ttfs_clamped_network, ttfs_dynamic_network, ttfs_network

__all__ = [
    "ASNActivation",
    "CODINGS",
    "Calibration",
    "ConversionError",
    "Kind",
    "LayerGraph",
    "Node",
    "Normalization",
    "QCFS",
    "SUPPORTED",
    "Scale",
    "SpikingMaxPool",
    "SpikingNetwork",
    "Step",
    "activation_nodes",
    "asn_model",
    "asn_network",
    "batchnorm_affine",
    "calibrate",
    "clamp_activations",
    "convert",
    "finalize",
    "fold_batchnorm",
    "load_onnx",
    "prepare",
    "qcfs_model",
    "qcfs_network",
    "rate_network",
    "register_layer",
    "simulate",
    "to_spiking",
    "trace",
    "ttfs_clamped_network",
    "ttfs_dynamic_network",
    "ttfs_network",
]

#: Coding schemes: ``name -> build(graph, calibration, **options) -> SpikingNetwork``.
CODINGS: dict[str, Callable[..., SpikingNetwork]] = {
    "rate": rate_network,
    "qcfs": qcfs_network,
    "ttfs": ttfs_network,
    "ttfs-dynamic": ttfs_dynamic_network,
    "ttfs-clamped": ttfs_clamped_network,
    "asn": asn_network,
}


def _check_options(coding: str, options: dict) -> None:
    """Refuse builder options the coding does not take, listing those it does."""
    params = inspect.signature(CODINGS[coding]).parameters
    known = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "info"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"coding {coding!r} takes no option {', '.join(map(repr, unknown))}; its options: {', '.join(known) or 'none'}"
        )


def prepare(model: Union[torch.nn.Module, LayerGraph]) -> LayerGraph:
    """The first two stages: trace ``model``, check its parameters are finite (before
    folding, so that a message names the model's own parameter), fold BatchNorm. What
    :func:`calibrate` measures and the codings build from.

    Raises:
        ConversionError: a layer that cannot be converted (naming it).
        ValueError: NaN or Inf in a parameter (naming it).
    """
    graph = trace(model)
    graph.check_finite()
    return fold_batchnorm(graph)


def convert(
    model: Union[torch.nn.Module, LayerGraph],
    data: Optional[Union[torch.Tensor, Iterable]] = None,
    *,
    coding: str = "rate",
    normalization: Normalization | str = "percentile",
    percentile: float = 99.99,
    per_channel: bool = True,
    max_samples: int = 2000,
    calibration: Optional[Calibration] = None,
    **options: Any,
) -> SpikingNetwork:
    """Convert a trained ANN into a spiking network.

    Args:
        model: a ``torch.nn.Module`` (see :data:`SUPPORTED`) or a :class:`LayerGraph`
            (for example from an ONNX file).
        data: calibration inputs ``[N, ...]`` or an iterable of batches.
        coding: a key of :data:`CODINGS`.
        normalization, percentile, per_channel, max_samples: for :func:`calibrate`
            (per-channel scales by default: after BatchNorm folding the channels of one
            layer differ widely, and one scale per layer starves the quiet ones).
        calibration: scales measured before (by :func:`calibrate` on the folded graph,
            or read back with ``Calibration.from_payload``): used instead of measuring
            them from ``data``, which is then not needed. A copy is used: the builder
            cannot change the caller's scales.
        options: for the coding's builder (``initial_membrane``, ...).

    Raises:
        TypeError: ``model`` is not a module or LayerGraph; calibration data of the
            wrong type.
        ValueError: an unknown ``coding`` or ``normalization``, or an option the
            coding does not take (each lists the valid ones); ``percentile``,
            ``per_channel`` or ``max_samples`` out of range; NaN or Inf in a weight
            (naming it) or in the calibration data; calibration data of a shape the
            model does not take.
        ConversionError: a layer that cannot be converted (naming it), empty
            calibration data, or a dead activation.
    """
    if not isinstance(coding, str) or coding not in CODINGS:
        raise ValueError(f"unknown coding {coding!r}; expected one of {sorted(CODINGS)}")
    if not isinstance(model, (torch.nn.Module, LayerGraph)):
        raise TypeError(f"model must be a torch.nn.Module or a LayerGraph, got {type(model).__name__}")
    Normalization.parse(normalization)
    check_calibration_options(percentile, per_channel, max_samples)
    _check_options(coding, options)
    graph = prepare(model)
    if coding in ("ttfs-clamped", "asn"):  # the activations fix their own range: no data needed
        calibration = None
    elif calibration is not None:
        if not isinstance(calibration, Calibration):
            raise TypeError(f"calibration must be a Calibration, got {type(calibration).__name__}")
        calibration = Calibration.from_payload(calibration.to_payload())
    else:
        calibration = calibrate(
            graph, data, method=normalization, percentile=percentile, per_channel=per_channel, max_samples=max_samples
        )
    info = {
        "coding": coding,
        "normalization": Normalization.parse(normalization).value,
        "percentile": float(percentile),
        "per_channel": bool(per_channel),
        "source": type(model).__name__,
    }
    layout = graph.nodes[0].attrs.get("layout")
    if layout is not None:  # an ONNX model that took channels-last input
        info["input_layout"] = layout
    return CODINGS[coding](graph, calibration, info=info, **options)
