"""Crossbar layers: ``torch.nn.Linear`` and ``torch.nn.Conv2d`` computed on a simulated
memristive crossbar (:mod:`spikeflow.hardware.device`), drop-in replacements.

A layer is in one of three modes:

- **evaluation** (``layer.eval()``): the weights are programmed into the device once
  (again only when they change), keeping conductances and faults; every forward is
  a read of that device (drift, fresh read noise, IR drop) through the DAC and ADC.
  Repeated reads differ by read noise only.
- **hardware-aware training** (``layer.train()`` with ``hardware_aware=True``):
  every forward programs a fresh device from the current weights (levels,
  programming variation, faults drawn anew, read noise, converters) from the global
  RNG, with straight-through gradients: ``d y / d w`` is that of the ideal layer at
  the noisy weights. Drift is not applied in training.
- **ideal** (``layer.train()`` without ``hardware_aware``, or inside
  :func:`ideal_crossbars`): the plain layer.

The bias is digital (added after the ADC, not stored on the crossbar).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .device import (
    CrossbarConfig,
    conductances_to_weight,
    program_conductances,
    quantize_uniform,
    read_conductances,
    ste,
)

__all__ = ["CrossbarLinear", "CrossbarConv2d", "CrossbarLayer", "ideal_crossbars", "program"]


class CrossbarLayer:
    """What :class:`CrossbarLinear` and :class:`CrossbarConv2d` share (a mixin over
    the torch layer, whose ``weight`` is the weight to program)."""

    config: CrossbarConfig
    hardware_aware: bool
    device_index: int

    def _init_crossbar(self, config: Optional[CrossbarConfig], hardware_aware: bool, device_index: int) -> None:
        self.config = CrossbarConfig() if config is None else config
        if not isinstance(self.config, CrossbarConfig):
            raise TypeError(f"config must be a CrossbarConfig, got {type(self.config).__name__}")
        self.hardware_aware = bool(hardware_aware)
        self.device_index = int(device_index)
        self.ideal = False
        self.register_buffer("g_plus", None, persistent=False)
        self.register_buffer("g_minus", None, persistent=False)
        self.register_buffer("w_max", None, persistent=False)
        self._programmed_version: Optional[tuple] = None
        self._read_generator: Optional[torch.Generator] = None

    # -- the device --------------------------------------------------------------------
    def _matrix(self) -> torch.Tensor:
        return self.weight.detach().flatten(1)  # [out, in]: a conv's kernel as rows of inputs

    def _weight_key(self) -> tuple:
        return (self.weight._version, self.weight.data_ptr(), self.config)

    def program(self) -> None:
        """Program the current weights into the device (deterministic under
        ``config.seed`` and the layer's ``device_index``) and restart its read noise."""
        seed = self.config.seed * 1_000_003 + self.device_index
        generator = torch.Generator(device="cpu").manual_seed(seed)
        g_plus, g_minus, w_max = program_conductances(self._matrix().cpu(), self.config, generator)
        device = self.weight.device
        self.g_plus, self.g_minus, self.w_max = g_plus.to(device), g_minus.to(device), w_max.to(device)
        self._read_generator = torch.Generator(device="cpu").manual_seed(seed + 7_919)
        self._programmed_version = self._weight_key()

    @property
    def programmed(self) -> bool:
        """Whether the device holds the current weights."""
        return self._programmed_version == self._weight_key()

    def read_weight(self) -> torch.Tensor:
        """One read of the programmed device, as a weight of the layer's shape."""
        if not self.programmed:
            self.program()
        g_plus, g_minus = self.g_plus, self.g_minus
        if self.config.read_noise:
            # read noise from the layer's own generator (CPU), so reads are reproducible
            g_plus, g_minus = read_conductances(g_plus.cpu(), g_minus.cpu(), self.config, self._read_generator)
            g_plus, g_minus = g_plus.to(self.weight.device), g_minus.to(self.weight.device)
        else:
            g_plus, g_minus = read_conductances(g_plus, g_minus, self.config)
        weight = conductances_to_weight(g_plus, g_minus, self.w_max, self.config)
        return weight.view_as(self.weight).to(self.weight.dtype)

    def _training_weight(self) -> torch.Tensor:
        """A freshly programmed and read device (global RNG), straight through to ``weight``."""
        config = self.config.replace(drift_nu=0.0)
        g_plus, g_minus, w_max = program_conductances(self._matrix(), config)
        g_plus, g_minus = read_conductances(g_plus, g_minus, config)
        weight = conductances_to_weight(g_plus, g_minus, w_max, config).view_as(self.weight)
        return ste(self.weight, weight.to(self.weight.dtype))

    def _mode(self) -> str:
        if self.ideal or (self.training and not self.hardware_aware):
            return "ideal"
        return "aware" if self.training else "device"

    def _crossbar_forward(self, x: torch.Tensor, product) -> torch.Tensor:
        mode = self._mode()
        if mode == "ideal":
            return product(x, self.weight, self.bias)
        weight = self._training_weight() if mode == "aware" else self.read_weight()
        config = self.config
        x = ste(x, quantize_uniform(x.detach(), config.dac_bits, config.input_range))
        y = product(x, weight, None)
        y = ste(y, quantize_uniform(y.detach(), config.adc_bits, config.output_range))
        return y if self.bias is None else self._add_bias(y)

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.bias

    def _crossbar_repr(self) -> str:
        changed = {k: v for k, v in self.config.to_dict().items() if v != getattr(CrossbarConfig(), k)}
        parts = [f"{k}={v}" for k, v in changed.items()]
        if self.hardware_aware:
            parts.append("hardware_aware=True")
        return ", ".join(parts)


class CrossbarLinear(CrossbarLayer, torch.nn.Linear):
    """``torch.nn.Linear`` on a memristive crossbar (see the module docstring).

    Args:
        in_features, out_features, bias: as for ``torch.nn.Linear``.
        config: the :class:`CrossbarConfig` (None: an ideal device).
        hardware_aware: inject the device's non-idealities when training.
        device_index: distinguishes the devices of one model under one seed.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 config: Optional[CrossbarConfig] = None, hardware_aware: bool = False, device_index: int = 0,
                 device=None, dtype=None) -> None:
        torch.nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_crossbar(config, hardware_aware, device_index)

    @classmethod
    def from_linear(cls, layer: torch.nn.Linear, config: Optional[CrossbarConfig] = None, **kwargs) -> "CrossbarLinear":
        """A crossbar layer with ``layer``'s weights (copied)."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None, config=config,
                  device=layer.weight.device, dtype=layer.weight.dtype, **kwargs)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._crossbar_forward(x, F.linear)

    def extra_repr(self) -> str:
        extra = self._crossbar_repr()
        return super().extra_repr() + (", " + extra if extra else "")


class CrossbarConv2d(CrossbarLayer, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` on a memristive crossbar: the kernel ``[C_out, C_in, kh, kw]``
    is stored as a ``C_out x (C_in kh kw)`` array (one column per output channel).

    Args: as for ``torch.nn.Conv2d`` (``padding_mode`` zeros), plus ``config``,
    ``hardware_aware`` and ``device_index`` as for :class:`CrossbarLinear`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, config: Optional[CrossbarConfig] = None,
                 hardware_aware: bool = False, device_index: int = 0, device=None, dtype=None) -> None:
        torch.nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                 bias, device=device, dtype=dtype)
        self._init_crossbar(config, hardware_aware, device_index)

    @classmethod
    def from_conv(cls, layer: torch.nn.Conv2d, config: Optional[CrossbarConfig] = None, **kwargs) -> "CrossbarConv2d":
        """A crossbar layer with ``layer``'s weights (copied)."""
        if layer.padding_mode != "zeros":
            raise ValueError(f"a crossbar Conv2d needs padding_mode 'zeros', got {layer.padding_mode!r}")
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, layer.groups, layer.bias is not None, config=config,
                  device=layer.weight.device, dtype=layer.weight.dtype, **kwargs)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def product(inp, weight, bias):
            return F.conv2d(inp, weight, bias, self.stride, self.padding, self.dilation, self.groups)

        return self._crossbar_forward(x, product)

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.bias.view(-1, 1, 1)

    def extra_repr(self) -> str:
        extra = self._crossbar_repr()
        return super().extra_repr() + (", " + extra if extra else "")


def crossbar_layers(model: torch.nn.Module) -> list[tuple[str, CrossbarLayer]]:
    """``(name, layer)`` of every crossbar layer in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CrossbarLayer)]


def program(model: torch.nn.Module) -> int:
    """Program every crossbar layer of ``model`` with its current weights; returns
    how many were programmed."""
    layers = crossbar_layers(model)
    for _, layer in layers:
        layer.program()
    return len(layers)


@contextlib.contextmanager
def ideal_crossbars(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, every crossbar layer of ``model`` computes as its ideal layer."""
    layers = [layer for _, layer in crossbar_layers(model)]
    before = [layer.ideal for layer in layers]
    for layer in layers:
        layer.ideal = True
    try:
        yield model
    finally:
        for layer, value in zip(layers, before):
            layer.ideal = value
