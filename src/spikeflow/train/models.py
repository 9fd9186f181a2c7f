"""Training presets: a data set and a model builder under one name.

``digits-mlp`` (the default of ``spikeflow train``)::

    x [B, 64] --encode--> [T, B, 64] -> Linear(64, H) -> LIF(beta) -> Linear(H, 10) -> readout

where the readout is a non-spiking ``LI`` layer (read as logits by the time
reduction ``config.readout``: max, mean, last or sum of the membrane) or, for
``readout="count"``, a spiking ``LIF`` layer read by its spike counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

import torch

from .. import surrogate as _sg
from .config import TrainConfig

__all__ = ["PRESETS", "Preset", "build_model", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A named training setup.

    Attributes:
        name: the preset name (``TrainConfig.preset``).
        description: one line for ``--help`` and listings.
        load_data: ``load_data() -> (x_train, y_train, x_test, y_test)``, with
            inputs ``[N, *features]`` in [0, 1] and labels ``[N]``.
        build: ``build(config) -> torch.nn.Module`` mapping ``[T, B, *features]`` to
            ``(output [T, B, classes], states)``.
        classes: number of classes.
        threads: torch intra-op threads that suit the model (None: torch's default);
            used when ``TrainConfig.threads`` is None.
    """

    name: str
    description: str
    load_data: Callable[[], tuple]
    build: Callable[[TrainConfig], torch.nn.Module]
    classes: int
    threads: Optional[int] = None


def _load_digits() -> tuple:
    from ..data import load_digits

    return tuple(load_digits())


def _readout_layer(config: TrainConfig, snn) -> torch.nn.Module:
    if config.readout == "count":
        return snn.LIF(
            config.readout_beta,
            surrogate=_sg.by_name(config.surrogate, config.surrogate_alpha),
            backend=config.backend,
        )
    return snn.LI(config.readout_beta, backend=config.backend)


def build_digits_mlp(config: TrainConfig) -> torch.nn.Module:
    """``Linear(64, H) -> LIF -> Linear(H, 10) -> LI`` (or ``LIF`` for the count readout)."""
    from .. import nn as snn

    return snn.Sequential(
        snn.Linear(64, config.hidden),
        snn.LIF(
            config.beta,
            surrogate=_sg.by_name(config.surrogate, config.surrogate_alpha),
            backend=config.backend,
        ),
        snn.Linear(config.hidden, 10),
        _readout_layer(config, snn),
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "digits-mlp": Preset(
            name="digits-mlp",
            description="scikit-learn 8x8 digits, 64-H-10 spiking MLP (LIF hidden layer)",
            load_data=_load_digits,
            build=build_digits_mlp,
            classes=10,
            threads=1,
        ),
    }
)
"""The presets by name (read-only)."""


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ``ValueError`` lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The model of ``config.preset`` (uses the global torch RNG for initialisation)."""
    return get_preset(config.preset).build(config)
