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

from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import torch

from .._choice import Choice
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


def activation_nodes(graph: LayerGraph) -> list[str]:
    """Names of the nodes that become spiking neurons (ReLUs and conversion activations)."""
    return [n.name for n in graph.nodes if n.kind in (Kind.RELU, Kind.ACTIVATION)]


def _batches(data: Union[torch.Tensor, Iterable], limit: int) -> Iterable[torch.Tensor]:
    """Input batches ``[B, ...]`` from a tensor or an iterable of tensors / (x, y) pairs."""
    if isinstance(data, torch.Tensor):
        for start in range(0, min(len(data), limit), 256):
            yield data[start : min(start + 256, limit)]
        return
    seen = 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"calibration data must yield tensors or (x, y) pairs, got {type(x).__name__}")
        x = x[: limit - seen]
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
            y)``); needed unless every activation is clipped.
        method: ``"max"`` or ``"percentile"``.
        percentile: in (0, 100]; 100 equals ``"max"``.
        per_channel: one scale per channel (dimension 1) instead of per layer.
        max_samples: calibration samples used at most.
        seed: for the random subsample a percentile is estimated from.

    Raises:
        ConversionError: an activation was never positive on the data (its scale
            would be 0), or data is missing where it is needed.
    """
    method = Normalization.parse(method)
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples!r}")
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
            _, values = graph.run(x.float() if not x.is_floating_point() else x, record=True)
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
            raise ConversionError("the calibration data is empty")
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
