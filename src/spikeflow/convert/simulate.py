"""Run a converted network on static inputs and read its output at several lengths."""

from __future__ import annotations

import numbers
from typing import Iterable, Optional

import torch

from .network import SpikingNetwork

__all__ = ["simulate", "check_timesteps", "check_static_input"]


def check_timesteps(timesteps: Iterable[int] | int) -> list[int]:
    """Sorted, distinct, positive step counts.

    Raises:
        ValueError: not a positive int or a non-empty iterable of them.
    """
    if isinstance(timesteps, numbers.Integral):
        values = [timesteps]
    elif isinstance(timesteps, (str, bytes)) or not isinstance(timesteps, Iterable):
        values = []
    else:
        values = list(timesteps)
    if not values or any(isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1 for t in values):
        raise ValueError(f"timesteps must be positive integers, got {timesteps!r}")
    return sorted(set(int(t) for t in values))


def check_static_input(x: object, what: str = "x") -> None:
    """A batch of static inputs ``[B, *input]``: a floating-point tensor of finite
    values with at least one sample.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: no batch axis, no samples, or NaN / Inf values.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [B, *input], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")
    if x.dim() < 2:
        raise ValueError(
            f"{what} must be a batch [B, *input] (at least 2 dims), got shape {tuple(x.shape)}; "
            f"add the batch axis with x.unsqueeze(0)"
        )
    if len(x) == 0:
        raise ValueError(f"{what} has no samples (shape {tuple(x.shape)}); expected B >= 1")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{what} must be finite, got {int(torch.isnan(x).sum())} NaN and {int(torch.isinf(x).sum())} Inf "
            f"values (they would poison the membrane state of every neuron they reach)"
        )


@torch.no_grad()
def simulate(
    net: SpikingNetwork,
    x: torch.Tensor,
    timesteps: Iterable[int] | int,
    *,
    chunk: Optional[int] = None,
) -> dict[int, torch.Tensor]:
    """The network's output averaged over the first ``T`` steps, for every ``T`` in
    ``timesteps``, with ``x`` (``[B, ...]``) presented as a constant input current.

    One simulation of ``max(timesteps)`` steps, fed ``chunk`` steps at a time (all at
    once by default) with the state carried across chunks.

    Returns:
        ``{T: [B, ...]}``, the mean output current over steps ``1..T``, or, for a
        network whose ``info["readout"]`` is ``"last"``, the output at step ``T``.

    Raises:
        TypeError: ``net`` is not a SpikingNetwork; ``x`` not a floating-point tensor.
        ValueError: bad ``timesteps`` or ``chunk``; ``x`` without a batch axis,
            empty, with NaN / Inf, or of a shape the network does not take.
    """
    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"net must be a SpikingNetwork (from spikeflow.convert.convert), got {type(net).__name__}")
    steps = check_timesteps(timesteps)
    check_static_input(x)
    total = steps[-1]
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1):
        raise ValueError(f"chunk must be an int >= 1 or None, got {chunk!r}")
    chunk = total if chunk is None else int(chunk)
    last = net.info.get("readout", "mean") == "last"
    state: dict = {}
    running = None
    done = 0
    result: dict[int, torch.Tensor] = {}
    wanted = iter(steps)
    target = next(wanted)
    while done < total:
        length = min(chunk, total - done)
        out, state = net(x.unsqueeze(0).expand(length, *x.shape), state)
        sums = torch.cumsum(out, dim=0)
        if running is not None:
            sums = sums + running
        while target is not None and target <= done + length:
            result[target] = out[target - done - 1] if last else sums[target - done - 1] / target
            target = next(wanted, None)
        running = sums[-1]
        done += length
    return result
