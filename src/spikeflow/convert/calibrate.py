"""The third stage: the scale of every activation, measured on data.

A spiking neuron that stands in for a ReLU with threshold ``lambda`` fires at a rate
(spikes per step) of about ``a / lambda`` for an activation ``a`` in ``[0, lambda]``
and saturates at one spike per step above it. ``lambda`` is taken from the ANN's
activations on calibration data (Rueckauer et al. 2017, "Conversion of
continuous-valued deep networks to efficient event-driven networks"): their
maximum, or a robust percentile (99.99 by default), which gives up a few saturated
outliers for a finer resolution of all the other values. Per layer (one value) or
per channel (one value per output channel, dimension 1).

A clipped ReLU ``min(max(x, 0), m)`` needs no data: its scale is ``m``. A
conversion activation (QCFS, ASN transfer) carries its own scale.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

import torch

from .._choice import Choice
from ..train.checkpoint import is_dict_of
from .graph import ConversionError, Kind, LayerGraph

__all__ = ["Calibration", "Normalization", "calibrate", "activation_nodes"]

#: Values kept per node (per channel: per channel) to estimate a percentile.
MAX_SAMPLES = 1 << 21


class Normalization(Choice):
    """How the scale is read from the activations."""

    MAX = "max"
    PERCENTILE = "percentile"

    @classmethod
    def _what(cls) -> str:
        return "normalization"


@dataclass(frozen=True)
class Calibration:
    """Scales of the activation nodes, by node name.

    Attributes:
        scales: ``{node: tensor}``, a 0-d tensor per layer or ``[C]`` per channel.
        method: how they were measured; ``percentile`` is the percentile used.
        per_channel: whether the scales are per channel.
        samples: number of calibration samples seen (0 if none were needed).
        ranks: tensor rank (batch included) of every node's output, where data was seen.
    """

    scales: dict[str, torch.Tensor]
    method: Normalization
    percentile: float
    per_channel: bool
    samples: int
    ranks: dict[str, int] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """Tensors and plain values only (``torch.save`` / ``weights_only``-safe);
        :meth:`from_payload` reads it back."""
        return {
            "scales": {name: scale.detach().cpu().clone() for name, scale in self.scales.items()},
            "method": self.method.value,
            "percentile": float(self.percentile),
            "per_channel": bool(self.per_channel),
            "samples": int(self.samples),
            "ranks": {name: int(rank) for name, rank in self.ranks.items()},
        }

    @classmethod
    def from_payload(cls, payload: Any) -> "Calibration":
        """The calibration :meth:`to_payload` described.

        Raises:
            ValueError: an entry is missing or of the wrong type (naming it).
        """
        if not isinstance(payload, dict):
            raise ValueError(f"a calibration must be a dict, got {type(payload).__name__}")
        missing = [key for key in ("scales", "method", "percentile", "per_channel", "samples") if key not in payload]
        if missing:
            raise ValueError(f"the calibration lacks {', '.join(missing)}")
        scales, ranks = payload["scales"], payload.get("ranks", {})
        if not is_dict_of(scales, torch.Tensor):
            raise ValueError("the calibration's scales must be a dict of node name -> tensor")
        if not is_dict_of(ranks, int):
            raise ValueError("the calibration's ranks must be a dict of node name -> int")
        return cls(
            scales=dict(scales),
            method=Normalization.parse(payload["method"]),
            percentile=float(payload["percentile"]),
            per_channel=bool(payload["per_channel"]),
            samples=int(payload["samples"]),
            ranks=dict(ranks),
        )


def activation_nodes(graph: LayerGraph) -> list[str]:
    """Names of the nodes that become spiking neurons (ReLUs and conversion activations)."""
    return [n.name for n in graph.nodes if n.kind in (Kind.RELU, Kind.ACTIVATION)]


def check_calibration_batch(x: torch.Tensor, seen: int = 0) -> None:
    """One batch of calibration inputs: a real tensor ``[B, ...]`` of finite values.

    Raises:
        TypeError: complex values.
        ValueError: no batch axis, or NaN / Inf values.
    """
    if x.dim() < 2:
        raise ValueError(
            f"calibration data must be a batch [N, *input] (at least 2 dims), got shape {tuple(x.shape)}; "
            f"add the batch axis with x.unsqueeze(0)"
        )
    if x.is_complex():
        raise TypeError(f"calibration data must be real (floating point or integer), got dtype {x.dtype}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0]) + seen
        raise ValueError(
            f"calibration data must be finite, got NaN or Inf in sample {bad} "
            f"({int(torch.isnan(x).sum())} NaN, {int(torch.isinf(x).sum())} Inf in its batch)"
        )


def _batches(data: Union[torch.Tensor, Iterable], limit: int) -> Iterable[torch.Tensor]:
    """Input batches ``[B, ...]`` from a tensor or an iterable of tensors / (x, y) pairs
    (empty batches skipped)."""
    if isinstance(data, torch.Tensor):
        if data.dim() < 2:
            check_calibration_batch(data)
        for start in range(0, min(len(data), limit), 256):
            x = data[start : min(start + 256, limit)]
            check_calibration_batch(x, start)
            yield x
        return
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            f"calibration data must be a tensor [N, *input] or an iterable of batches, got {type(data).__name__}"
        )
    seen = 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"calibration data must yield tensors or (x, y) pairs, got {type(x).__name__}")
        check_calibration_batch(x, seen)
        x = x[: limit - seen]
        if len(x) == 0:
            continue
        seen += len(x)
        yield x
        if seen >= limit:
            return


def _keep(values: torch.Tensor, cap: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``cap`` of ``values`` (last dim), uniformly at random."""
    n = values.shape[-1]
    if n <= cap:
        return values
    idx = torch.randperm(n, generator=generator)[:cap]
    return values[..., idx]


def check_calibration_options(percentile: Any, per_channel: Any, max_samples: Any) -> None:
    """The options of :func:`calibrate` (also checked by :func:`~spikeflow.convert.convert`
    before any work).

    Raises:
        ValueError: naming the option, what it must be and what came.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100] (a number), got {percentile!r}")
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral) or max_samples < 1:
        raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True or False, got {per_channel!r}")


def check_builder_inputs(builder: str, graph: Any, calibration: Any, optional: bool = False) -> None:
    """A coding builder's ``graph`` and ``calibration`` arguments.

    Raises:
        TypeError: not a :class:`LayerGraph`; not a :class:`Calibration` (or None
            where ``optional``).
    """
    if not isinstance(graph, LayerGraph):
        raise TypeError(f"{builder}: graph must be a LayerGraph (from spikeflow.convert.trace), got {type(graph).__name__}")
    if calibration is None and optional:
        return
    if not isinstance(calibration, Calibration):
        raise TypeError(
            f"{builder}: calibration must be a Calibration (from spikeflow.convert.calibrate)"
            f"{' or None' if optional else ''}, got {type(calibration).__name__}"
        )


@torch.no_grad()
def calibrate(
    graph: LayerGraph,
    data: Optional[Union[torch.Tensor, Iterable]] = None,
    *,
    method: Normalization | str = "percentile",
    percentile: float = 99.99,
    per_channel: bool = False,
    max_samples: int = 2000,
    seed: int = 0,
) -> Calibration:
    """Measure the scale of every activation node of ``graph``.

    Args:
        graph: the (folded) :class:`LayerGraph`.
        data: input samples ``[N, ...]`` or an iterable of batches (``x`` or ``(x,
            y)``); needed unless every activation is clipped. Integer inputs are
            cast to float as they are; empty batches are skipped.
        method: ``"max"`` or ``"percentile"``.
        percentile: in (0, 100]; 100 equals ``"max"``.
        per_channel: one scale per channel (dimension 1) instead of per layer.
        max_samples: calibration samples used at most.
        seed: for the random subsample a percentile is estimated from.

    Raises:
        ConversionError: an activation was never positive on the data (its scale
            would be 0), the data is empty, or data is missing where it is needed.
        TypeError: ``graph`` is not a LayerGraph, or the data holds no tensors.
        ValueError: an unknown ``method``; ``percentile``, ``max_samples`` or
            ``per_channel`` out of range; data without a batch axis, with NaN or
            Inf, or of a shape the model does not take; NaN or Inf in a weight.
    """
    if not isinstance(graph, LayerGraph):
        raise TypeError(f"graph must be a LayerGraph (from spikeflow.convert.trace), got {type(graph).__name__}")
    method = Normalization.parse(method)
    check_calibration_options(percentile, per_channel, max_samples)
    graph.check_finite()
    q = 1.0 if method is Normalization.MAX else float(percentile) / 100.0
    names = activation_nodes(graph)
    scales: dict[str, torch.Tensor] = {}
    measured = []
    for name in names:
        node = graph[name]
        fixed = node.attrs.get("max") if node.kind is Kind.RELU else getattr(node.module, "scale", None)
        if fixed is not None:
            scales[name] = torch.as_tensor(fixed, dtype=torch.float32).detach().clone()
        else:
            measured.append(name)
    samples = 0
    ranks: dict[str, int] = {}
    if measured:
        if data is None:
            raise ConversionError(
                f"calibration data is needed to normalize the activations of {measured[:3]}"
                f"{' ...' if len(measured) > 3 else ''} (only clipped ReLUs need none)"
            )
        generator = torch.Generator().manual_seed(seed)
        kept: dict[str, list[torch.Tensor]] = {n: [] for n in measured}
        maxima: dict[str, torch.Tensor] = {}
        for x in _batches(data, max_samples):
            samples += len(x)
            _, values = graph.run(x.float() if not x.is_floating_point() else x, record=True, what="calibration data")
            ranks = {name: v.dim() for name, v in values.items()}
            for name in measured:
                a = values[name]
                if per_channel:
                    if a.dim() < 2:
                        raise ConversionError(f"per-channel scales need a channel dimension at {name!r}")
                    flat = a.transpose(0, 1).reshape(a.shape[1], -1)  # [C, N]
                    peak = flat.amax(1)
                else:
                    flat = a.reshape(1, -1)
                    peak = flat.amax()
                maxima[name] = peak if name not in maxima else torch.maximum(maxima[name], peak)
                if method is Normalization.PERCENTILE and q < 1.0:
                    cap = MAX_SAMPLES // max(flat.shape[0], 1)
                    kept[name].append(_keep(flat, cap, generator))
                    merged = torch.cat(kept[name], dim=1)
                    kept[name] = [_keep(merged, cap, generator)]
        if samples == 0:
            raise ConversionError("the calibration data is empty: got 0 samples, expected at least one [N >= 1, *input]")
        for name in measured:
            if method is Normalization.MAX or q >= 1.0:
                scale = maxima[name]
            else:
                values = kept[name][0]
                positive = torch.where(values > 0, values, torch.nan)
                scale = torch.nanquantile(positive.double(), q, dim=1).float()
                scale = scale if per_channel else scale.squeeze(0)
            scale = torch.nan_to_num(scale, nan=0.0)
            if per_channel:
                # a channel never active on the data: keep it silent but finite
                scale = torch.where(scale > 0, scale, scale.max().clamp(min=1e-6))
            if not bool((scale > 0).all()):
                raise ConversionError(
                    f"activation {name!r} was never positive on {samples} calibration samples; "
                    f"its scale cannot be measured (a dead layer?)"
                )
            scales[name] = scale.float()
    return Calibration(scales, method, float(percentile), bool(per_channel), samples, ranks)
