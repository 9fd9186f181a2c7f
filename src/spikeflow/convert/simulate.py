"""Run a converted network on static inputs and read its output at several lengths."""

from __future__ import annotations

from typing import Iterable, Optional

import torch

from .network import SpikingNetwork

__all__ = ["simulate", "check_timesteps"]


def check_timesteps(timesteps: Iterable[int] | int) -> list[int]:
    """Sorted, distinct, positive step counts."""
    values = [timesteps] if isinstance(timesteps, int) else list(timesteps)
    if not values or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in values):
        raise ValueError(f"timesteps must be positive integers, got {timesteps!r}")
    return sorted(set(values))


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
    """
    steps = check_timesteps(timesteps)
    total = steps[-1]
    chunk = total if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
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
