"""Modules to build spiking networks: neuron layers, stateless layers on sequences,
and :class:`Sequential`.

Every tensor is time-major, ``[T, B, *features]``. Neuron modules take and return
their state explicitly, ``out, state = neuron(x, state)``, and never store it;
``record`` also returns the state after every step. Stateless torch layers run on
all time steps at once through :class:`TimeDistributed` (the factories
:func:`Linear`, :func:`Conv2d`, ... build them).

Example::

    import torch, spikeflow
    from spikeflow import nn as snn

    net = snn.Sequential(
        snn.Linear(784, 128), snn.LIF(beta=0.9),
        snn.Linear(128, 10), snn.LI(beta=0.9),
    )
    out, states = net(x)               # x: [T, B, 784]; out: [T, B, 10]
"""

from ._layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    TimeDistributed,
)
from ._neurons import ASN, IF, LI, LIF, CubaLIF, GradedLIF, Neuron
from ._sequential import Recording, Sequential

__all__ = [
    "ASN",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CubaLIF",
    "Dropout",
    "Flatten",
    "GradedLIF",
    "IF",
    "LI",
    "LIF",
    "Linear",
    "MaxPool2d",
    "Neuron",
    "Recording",
    "Sequential",
    "TimeDistributed",
]
