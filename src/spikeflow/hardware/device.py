"""The memristive crossbar device model: what a weight matrix becomes on the chip.

A weight ``w`` of a layer whose largest weight is ``w_max`` is stored as the
difference of two conductances (a differential pair, in siemens)::

    u  = w / w_max                                   in [-1, 1]
    G+ = g_min + max(u, 0) * (g_max - g_min)
    G- = g_min + max(-u, 0) * (g_max - g_min)
    w  = w_max * (G+ - G-) / (g_max - g_min)         (what a read gives back)

Programming (once, :meth:`CrossbarConfig.program` in :func:`program_conductances`)
turns the targets into device states:

1. **levels**: with ``k`` levels each device takes one of
   ``g_min + n (g_max - g_min) / (k - 1)``, ``n = 0..k-1`` (the nearest);
2. **programming variation** (device to device): ``G += sigma_p (g_max - g_min) N(0, 1)``,
   clipped to ``[g_min, g_max]``;
3. **stuck-at faults**: each device is stuck at ``g_min`` with probability
   ``stuck_off`` and at ``g_max`` with probability ``stuck_on``, whatever was written.

Every read (:func:`read_conductances`) then sees

4. **drift** (power law): ``G(t) = G (t / t0)^(-nu)``, ``t`` the time since programming;
5. **read noise** (cycle to cycle): ``G (1 + sigma_r N(0, 1))``, fresh at every read;
6. **IR drop** (optional, first order): a device on input row ``i`` of ``n`` and output
   column ``j`` sits behind ``r_wire (j + 1 + n - i)`` ohms of wire (along its row
   from the driver, down its column to the sense amplifier), so it conducts
   ``G / (1 + G r_wire (j + 1 + n - i))``; currents that share wire segments are
   neglected.

Inputs pass a DAC and outputs an ADC (:func:`quantize_uniform`): ``b`` bits over
``[0, x_max]`` for non-negative inputs (spikes pass any DAC exactly), over
``[-x_max, x_max]`` with a sign bit otherwise; the range is fixed or, if not given,
the largest magnitude of the tensor being converted (dynamic range).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

import torch

__all__ = ["CrossbarConfig", "program_conductances", "read_conductances", "quantize_uniform", "ste"]


def _number(name: str, value: Any, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
            open_min: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (open_min and value == minimum)):
        raise ValueError(f"{name} must be {'>' if open_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")
    return value


def _bits(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 24:
        raise ValueError(f"{name} must be an integer from 1 to 24 (or None: ideal), got {value!r}")
    return value


@dataclass(frozen=True)
class CrossbarConfig:
    """A memristive crossbar (see the module docstring for the equations).

    The defaults are an ideal device with the conductance window of typical HfO2 /
    TaOx RRAM (1 to 100 microsiemens, an on/off ratio of 100); set the
    non-idealities to study them. Typical magnitudes in the literature: 8 to 64
    levels, programming variation of 1 to 5 % of the window, read noise of 1 to 3 %,
    stuck-at fault rates of 0.1 to 2 %, drift exponents near 0.005 for RRAM and
    0.05 for phase-change memory, about 1 ohm of wire per cell.

    Attributes:
        g_min, g_max: conductance window in siemens (``0 <= g_min < g_max``).
        levels: programmable conductance levels per device (>= 2), None: continuous.
        program_noise: device-to-device programming variation, the std as a fraction
            of ``g_max - g_min``.
        read_noise: cycle-to-cycle read noise, the std relative to the conductance.
        stuck_off, stuck_on: probabilities of a device stuck at ``g_min`` / ``g_max``.
        drift_nu: drift exponent ``nu`` (>= 0); ``drift_t0``: the reference time in s
            (> 0); ``drift_time``: the time since programming at which it is read, s.
        dac_bits, adc_bits: input and output converter resolution, None: ideal.
        input_range, output_range: the converters' full scale (in the layer's input
            and output units); None: each call's largest magnitude.
        r_wire: wire resistance per cell segment in ohms (0: no IR drop).
        seed: seeds the device (faults, programming variation, read noise).
    """

    g_min: float = 1e-6
    g_max: float = 1e-4
    levels: Optional[int] = None
    program_noise: float = 0.0
    read_noise: float = 0.0
    stuck_off: float = 0.0
    stuck_on: float = 0.0
    drift_nu: float = 0.0
    drift_t0: float = 1.0
    drift_time: float = 1.0
    dac_bits: Optional[int] = None
    adc_bits: Optional[int] = None
    input_range: Optional[float] = None
    output_range: Optional[float] = None
    r_wire: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("g_min", _number("g_min", self.g_min, minimum=0.0))
        set_("g_max", _number("g_max", self.g_max, minimum=0.0, open_min=True))
        if not self.g_min < self.g_max:
            raise ValueError(f"g_min must be below g_max, got g_min={self.g_min!r}, g_max={self.g_max!r}")
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or self.levels < 2):
            raise ValueError(f"levels must be an integer >= 2 (or None: continuous), got {self.levels!r}")
        for name in ("program_noise", "read_noise", "drift_nu", "r_wire"):
            set_(name, _number(name, getattr(self, name), minimum=0.0))
        for name in ("stuck_off", "stuck_on"):
            set_(name, _number(name, getattr(self, name), minimum=0.0, maximum=1.0))
        if self.stuck_off + self.stuck_on > 1.0:
            raise ValueError(f"stuck_off + stuck_on must be <= 1, got {self.stuck_off + self.stuck_on!r}")
        set_("drift_t0", _number("drift_t0", self.drift_t0, minimum=0.0, open_min=True))
        set_("drift_time", _number("drift_time", self.drift_time, minimum=0.0, open_min=True))
        set_("dac_bits", _bits("dac_bits", self.dac_bits))
        set_("adc_bits", _bits("adc_bits", self.adc_bits))
        for name in ("input_range", "output_range"):
            if getattr(self, name) is not None:
                set_(name, _number(name, getattr(self, name), minimum=0.0, open_min=True))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def window(self) -> float:
        """``g_max - g_min`` in siemens."""
        return self.g_max - self.g_min

    @property
    def ideal(self) -> bool:
        """No non-ideality at all (the layer then equals its ideal layer)."""
        return (self.levels is None and self.program_noise == 0 and self.read_noise == 0 and self.stuck_off == 0
                and self.stuck_on == 0 and (self.drift_nu == 0 or self.drift_time == self.drift_t0)
                and self.dac_bits is None and self.adc_bits is None and self.r_wire == 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CrossbarConfig":
        """From plain values; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown crossbar setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "CrossbarConfig":
        return CrossbarConfig.from_dict({**self.to_dict(), **changes})


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def ste(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the identity's gradient to ``x`` in the backward pass."""
    return _StraightThrough.apply(x, y.detach())


def quantize_uniform(x: torch.Tensor, bits: Optional[int], full_scale: Optional[float]) -> torch.Tensor:
    """``x`` rounded to a ``bits``-bit converter's levels and clipped to its range
    (see the module docstring); unchanged for ``bits`` None. Not differentiable
    (wrap with :func:`ste`)."""
    if bits is None:
        return x
    scale = float(full_scale) if full_scale is not None else float(x.detach().abs().max())
    if scale == 0.0:
        return x
    if float(x.detach().min()) >= 0:
        step = scale / (2 ** bits - 1)
        return torch.round(x.clamp(0.0, scale) / step) * step
    if bits == 1:
        return torch.sign(x) * scale
    step = scale / (2 ** (bits - 1) - 1)
    return torch.round(x.clamp(-scale, scale) / step) * step


def _normal(shape, generator: Optional[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device if generator else like.device).to(like.device)


def _uniform(shape, generator: Optional[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=generator.device if generator else like.device).to(like.device)


def program_conductances(
    weight: torch.Tensor, config: CrossbarConfig, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Program ``weight`` ``[out, in]`` into the crossbar: ``(G+, G-, w_max)``, the
    device conductances ``[out, in]`` in siemens after levels, programming variation
    and faults, and the weight scale. Draws from ``generator`` (the global RNG if None):
    the fault draws first, then the programming variation."""
    weight = weight.detach()
    w_max = weight.abs().max()
    u = weight / w_max if float(w_max) > 0 else torch.zeros_like(weight)
    pair = torch.stack([u.clamp(min=0.0), (-u).clamp(min=0.0)])  # [2, out, in] in [0, 1]
    faults = _uniform(pair.shape, generator, pair) if (config.stuck_off or config.stuck_on) else None
    if config.levels is not None:
        pair = torch.round(pair * (config.levels - 1)) / (config.levels - 1)
    g = config.g_min + pair * config.window
    if config.program_noise:
        g = g + config.program_noise * config.window * _normal(g.shape, generator, g)
        g = g.clamp(config.g_min, config.g_max)
    if faults is not None:
        g = torch.where(faults < config.stuck_off, torch.full_like(g, config.g_min), g)
        stuck_on = (faults >= config.stuck_off) & (faults < config.stuck_off + config.stuck_on)
        g = torch.where(stuck_on, torch.full_like(g, config.g_max), g)
    return g[0], g[1], w_max


def read_conductances(
    g_plus: torch.Tensor, g_minus: torch.Tensor, config: CrossbarConfig, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One read of programmed conductances ``[out, in]``: drift, read noise (fresh
    draws from ``generator``) and IR drop applied."""
    g = torch.stack([g_plus, g_minus])
    if config.drift_nu and config.drift_time != config.drift_t0:
        g = g * (config.drift_time / config.drift_t0) ** (-config.drift_nu)
    if config.read_noise:
        g = (g * (1.0 + config.read_noise * _normal(g.shape, generator, g))).clamp(min=0.0)
    if config.r_wire:
        n_out, n_in = g.shape[1:]
        column = torch.arange(n_out, dtype=g.dtype, device=g.device).view(-1, 1)
        row = torch.arange(n_in, dtype=g.dtype, device=g.device).view(1, -1)
        wire = config.r_wire * (column + 1 + n_in - row)  # ohms in series with each device
        g = g / (1.0 + g * wire)
    return g[0], g[1]


def conductances_to_weight(g_plus: torch.Tensor, g_minus: torch.Tensor, w_max: torch.Tensor,
                           config: CrossbarConfig) -> torch.Tensor:
    """The weight a differential pair stands for: ``w_max (G+ - G-) / (g_max - g_min)``."""
    return (g_plus - g_minus) * (w_max / config.window)
