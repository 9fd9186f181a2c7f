"""The networks of the training presets, built from a :class:`TrainConfig`.

Every builder returns a module mapping ``[T, B, *features]`` to ``(output [T, B,
classes], state)``, read by the config's readout. Builders use the global torch RNG
for their initial weights (the trainer seeds it).

==============  ================================================================
builder         network
==============  ================================================================
digits_mlp      ``Linear(64, H) -> LIF -> Linear(H, 10) -> readout``
mnist_mlp       ``Flatten -> Linear(784, H) -> LIF -> Linear(H, 10) -> readout``
mnist_cnn       ``[Conv3x3(c) -> BN -> LIF -> MaxPool2] x 2 (c = H, 2H) -> Linear -> readout``
seed001         seed 001's SpikingNet: 784-100-10 graded LIF, delayed membrane out
seed003         seed 003's network: current-based LIF layers with recurrence
seed004         seed 004's network: 784-128-10 current-based LIF, no biases
==============  ================================================================

``readout`` is a non-spiking ``LI`` layer for the membrane readouts and a spiking
``LIF`` layer for ``count``/``count-mse``/``first-spike``. With ``config.ann`` the spiking hidden
neurons become ReLUs (the ANN twin an SNN is compared with).
"""

from __future__ import annotations

import torch

from .. import nn as snn
from .. import surrogate as _sg
from .config import TrainConfig

__all__ = [
    "Seed001Net",
    "build_digits_mlp",
    "build_mnist_cnn",
    "build_mnist_mlp",
    "build_seed001",
    "build_seed003",
    "build_seed004",
]


def _surrogate(config: TrainConfig) -> _sg.Surrogate:
    return _sg.by_name(config.surrogate, config.surrogate_alpha)


def _hidden(config: TrainConfig) -> torch.nn.Module:
    """A hidden activation: LIF neurons, or a ReLU in an ANN twin."""
    if config.ann:
        return torch.nn.ReLU()
    return snn.LIF(config.beta, surrogate=_surrogate(config), backend=config.backend)


def _readout(config: TrainConfig) -> torch.nn.Module:
    if config.readout in ("count", "count-mse", "first-spike"):
        return snn.LIF(config.readout_beta, surrogate=_surrogate(config), backend=config.backend)
    return snn.LI(config.readout_beta, backend=config.backend)


def build_digits_mlp(config: TrainConfig) -> torch.nn.Module:
    """``Linear(64, H) -> LIF -> Linear(H, 10) -> readout`` on the 8x8 digits."""
    return snn.Sequential(
        snn.Linear(64, config.hidden), _hidden(config), snn.Linear(config.hidden, 10), _readout(config)
    )


def build_mnist_mlp(config: TrainConfig) -> torch.nn.Module:
    """``Flatten -> Linear(784, H) -> LIF -> Linear(H, 10) -> readout`` on 28x28 images."""
    return snn.Sequential(
        snn.Flatten(),
        snn.Linear(784, config.hidden),
        _hidden(config),
        snn.Linear(config.hidden, 10),
        _readout(config),
    )


def build_mnist_cnn(config: TrainConfig) -> torch.nn.Module:
    """Two convolution blocks (3x3, padding 1, BatchNorm, LIF, 2x2 max-pooling) with
    ``H`` and ``2H`` channels, then ``Linear(2H * 7 * 7, 8H) -> LIF -> Linear(8H, 10) ->
    readout``.

    BatchNorm normalises over time and batch together (it sees ``[T * B, C, H, W]``).
    """
    c1, c2 = config.hidden, 2 * config.hidden
    return snn.Sequential(
        snn.Conv2d(1, c1, 3, padding=1),
        snn.BatchNorm2d(c1),
        _hidden(config),
        snn.MaxPool2d(2),
        snn.Conv2d(c1, c2, 3, padding=1),
        snn.BatchNorm2d(c2),
        _hidden(config),
        snn.MaxPool2d(2),
        snn.Flatten(),
        snn.Linear(c2 * 7 * 7, 8 * c1),
        _hidden(config),
        snn.Linear(8 * c1, 10),
        _readout(config),
    )


class Seed001Net(torch.nn.Module):
    """Seed 001's ``SpikingNet``: ``Linear(784, H) -> GradedLIF -> Linear(H, 10) ->
    GradedLIF``, read through the output layer's *delayed membrane*.

    Both graded-LIF layers have ``beta`` = ``config.beta`` (0.9), threshold 2 and
    reset penalty 2.5; the linear weights are Xavier-uniform, the biases PyTorch's
    default, as in the seed. The output at step ``t`` is the last layer's membrane
    ``v[t-1]`` (``v[-1] = 0``), the seed's ``delayed_return_state``; averaged over time
    (the ``mean`` readout) it gives the seed's logits.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        hidden = config.hidden
        self.features = snn.Sequential(
            snn.Flatten(),
            snn.Linear(784, hidden),
            snn.GradedLIF(config.beta, threshold=2.0, penalty=2.5, backend=config.backend),
            snn.Linear(hidden, 10),
        )
        self.output = snn.GradedLIF(config.beta, threshold=2.0, penalty=2.5, backend=config.backend)
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)

    def forward(self, x: torch.Tensor, state=None):
        if state is not None:
            raise ValueError("Seed001Net runs from rest; it takes no state")
        drive, features_state = self.features(x)
        result = self.output.record(drive)
        v = result.trajectory.v  # [T, B, 10]: membrane after each step
        delayed = torch.cat([torch.zeros_like(v[:1]), v[:-1]])
        return delayed, (features_state, result.state)


def build_seed001(config: TrainConfig) -> torch.nn.Module:
    """Seed 001's SpikingNet (:class:`Seed001Net`)."""
    return Seed001Net(config)


def _seed003_layer(config: TrainConfig, size: int) -> torch.nn.Module:
    """Seed 003's ``lif_step``: membrane decay 0.95 (its alpha), synaptic 0.9 (its beta)
    and recurrent 0.85 (its betar), both currents normalised, the feed-forward current
    weighted by 20, zero reset with the reset detached, SuperSpike."""
    return snn.CubaLIF(
        alpha=0.9,
        beta=config.beta,
        alpha_rec=0.85,
        gain=20.0,
        normalize=True,
        order="membrane_first",
        reset="zero",
        detach_reset=True,
        surrogate=_surrogate(config),
        recurrent=size,
        backend=config.backend,
    )


def build_seed003(config: TrainConfig) -> torch.nn.Module:
    """Seed 003's ``[16, H, 2]`` network: two recurrent current-based LIF layers with
    bias-free Xavier-uniform weights, read by the output layer's spike counts."""
    hidden = config.hidden
    layers = [
        snn.Linear(16, hidden, bias=False),
        _seed003_layer(config, hidden),
        snn.Linear(hidden, 2, bias=False),
        _seed003_layer(config, 2),
    ]
    net = snn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            # U(-lim, lim), lim = sqrt(6 / (fan_in + fan_out)): seed 003's init_weights
            torch.nn.init.xavier_uniform_(module.weight)
    return net


def build_seed004(config: TrainConfig) -> torch.nn.Module:
    """Seed 004's ``784-H-10`` network: bias-free weights drawn from ``N(0, 0.1^2)``,
    current-based LIF with ``tau_mem = 20`` and ``tau_syn = 5`` steps (1 ms), zero reset
    with the reset detached, the straight-through (ReLU-derivative) surrogate, read by
    the output layer's spike counts."""

    def layer() -> torch.nn.Module:
        return snn.CubaLIF(
            tau_mem=20.0, tau_syn=5.0, reset="zero", detach_reset=True,
            surrogate=_surrogate(config), backend=config.backend,
        )

    net = snn.Sequential(
        snn.Flatten(),
        snn.Linear(784, config.hidden, bias=False),
        layer(),
        snn.Linear(config.hidden, 10, bias=False),
        layer(),
    )
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.1)
    return net
