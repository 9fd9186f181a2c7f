"""Layers that converted networks use besides the ordinary spikeflow ones.

- :class:`Scale`: multiplies by a per-layer or per-channel constant, the value one
  spike stands for (the activation scale ``lambda`` of the neuron before it).
- :class:`SpikingMaxPool`: max pooling in spiking form (Rueckauer et al. 2017): each
  window passes on the spikes of the input that has accumulated the most so far,
  so that over time it forwards the spike train of the input with the highest
  rate, the spiking counterpart of taking the maximum activation. On inputs that
  spike at most once (time-to-first-spike coding) this is the earliest spike.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["Scale", "SpikingMaxPool"]


class Scale(torch.nn.Module):
    """``y = scale * x`` with ``scale`` a 0-d tensor (per layer) or ``[C]`` (per channel,
    broadcast over dimension 2 of ``[T, B, C, ...]``)."""

    stateful = False

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (torch.Tensor, float, int)):
            raise TypeError(f"scale must be a number or a tensor, got {type(scale).__name__}")
        scale = torch.as_tensor(scale, dtype=torch.float32).detach().clone()
        if scale.dim() > 1 or not bool(torch.isfinite(scale).all()):
            raise ValueError(f"scale must be finite, 0-d (per layer) or [C] (per channel), got {scale}")
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[T, B, C, ...]``."""
        s = self.scale
        if s.dim() == 1:
            s = s.view((-1,) + (1,) * (x.dim() - 3))
        return x * s.to(x.dtype)

    def config(self) -> dict:
        return {"shape": list(self.scale.shape)}

    @classmethod
    def from_config(cls, config: dict) -> "Scale":
        return cls(torch.ones(config["shape"]))

    def extra_repr(self) -> str:
        s = self.scale
        return f"scale={s.item():.4g}" if s.dim() == 0 else f"scale=[{s.numel()}] in [{s.min():.3g}, {s.max():.3g}]"


class SpikingMaxPool(torch.nn.Module):
    """Max pooling of spike trains gated by accumulated input.

    With ``c[t] = c[t-1] + x[t]`` the running sum of each input (state, ``[B, C, ...]``),
    output ``y[t]`` of a window is ``x[t]`` at the position where ``c[t]`` is largest
    (the first such position on ties). The running sum includes step ``t``, so an input
    that spikes now wins a tie against one that spiked as often before.

    Args:
        pool: the ANN's ``MaxPool1d`` / ``MaxPool2d`` (its kernel, stride, padding,
            dilation and ceil mode are kept).
    """

    stateful = True

    def __init__(self, pool: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(pool, (torch.nn.MaxPool1d, torch.nn.MaxPool2d)):
            raise TypeError(f"SpikingMaxPool takes a MaxPool1d or MaxPool2d, got {type(pool).__name__}")
        self.pool = pool
        self.spatial = 1 if isinstance(pool, torch.nn.MaxPool1d) else 2

    def _pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pool
        fn = F.max_pool1d if self.spatial == 1 else F.max_pool2d
        return fn(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, return_indices=True)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``[T, B, C, *spatial]`` -> ``(y [T, B, C, *pooled], running sum [B, C, *spatial])``."""
        if x.dim() != self.spatial + 3:
            raise ValueError(
                f"SpikingMaxPool({self.spatial}d) expects [T, B, C, {'L' if self.spatial == 1 else 'H, W'}], "
                f"got shape {tuple(x.shape)}"
            )
        t, b = x.shape[:2]
        if state is None:
            state = torch.zeros_like(x[0])
        elif state.shape != x.shape[1:]:
            raise ValueError(f"SpikingMaxPool state has shape {tuple(state.shape)}, expected {tuple(x.shape[1:])}")
        running = state.unsqueeze(0) + torch.cumsum(x, dim=0)
        _, index = self._pool(running.flatten(0, 1))  # [T*B, C, *pooled]
        flat = x.flatten(0, 1).flatten(2)  # [T*B, C, L]
        y = torch.gather(flat, 2, index.flatten(2)).view(index.shape)
        return y.unflatten(0, (t, b)), running[-1]

    def config(self) -> dict:
        p = self.pool
        return {
            "spatial": self.spatial,
            "kernel_size": p.kernel_size,
            "stride": p.stride,
            "padding": p.padding,
            "dilation": p.dilation,
            "ceil_mode": p.ceil_mode,
        }

    @classmethod
    def from_config(cls, config: dict) -> "SpikingMaxPool":
        config = dict(config)
        pool = torch.nn.MaxPool1d if config.pop("spatial") == 1 else torch.nn.MaxPool2d
        return cls(pool(**config))
