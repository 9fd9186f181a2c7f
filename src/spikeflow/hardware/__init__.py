"""Hardware-aware simulation: layers computed on simulated memristive crossbars.

- :mod:`~spikeflow.hardware.device`: the device model (differential conductance
  pairs, levels, programming variation, read noise, stuck-at faults, drift, DAC /
  ADC, IR drop) and :class:`CrossbarConfig`;
- :mod:`~spikeflow.hardware.crossbar`: :class:`CrossbarLinear` and
  :class:`CrossbarConv2d`, drop-in for ``torch.nn.Linear`` / ``Conv2d``, with
  hardware-aware training (noise in the forward pass, straight-through gradients);
- :mod:`~spikeflow.hardware.placement`: hardware files and :func:`to_crossbar`;
- :mod:`~spikeflow.hardware.sweep`: accuracy against a non-ideality.

::

    from spikeflow.hardware import CrossbarConfig, to_crossbar
    to_crossbar(model, CrossbarConfig(levels=16, program_noise=0.05))   # the last layer
    model.eval()      # programs the device; each forward is a read
"""

from .crossbar import CrossbarConv2d, CrossbarLayer, CrossbarLinear, crossbar_layers, ideal_crossbars, program
from .device import CrossbarConfig, program_conductances, quantize_uniform, read_conductances
from .placement import HardwareSpec, load_hardware, set_crossbar_config, to_crossbar

__all__ = [
    "CrossbarConfig",
    "CrossbarConv2d",
    "CrossbarLayer",
    "CrossbarLinear",
    "HardwareSpec",
    "crossbar_layers",
    "ideal_crossbars",
    "load_hardware",
    "program",
    "program_conductances",
    "quantize_uniform",
    "read_conductances",
    "set_crossbar_config",
    "to_crossbar",
]
