"""Training presets: a data set, a network and the settings that suit them, under
one name (``spikeflow train --preset NAME``).

=============  ===========================================================  ==========
preset         what                                                         data
=============  ===========================================================  ==========
digits-mlp     64-128-10 spiking MLP, LI max readout (the default)          built in
mnist-mlp      784-800-10 spiking MLP, direct input, LI max readout         MNIST
mnist-cnn      two conv blocks (32, 64) with BN, 256 LIF, LI max readout    MNIST
randman        seed 003's task and network, LSUV init, cosine schedule      generated
seed001        seed 001's SpikingNet with its settings                      MNIST
seed003        seed 003's recurrent current-LIF network on Randman          generated
seed004        seed 004's current-LIF network, latency input, count MSE     MNIST
=============  ===========================================================  ==========

MNIST presets read an MNIST-format folder from ``config.data_dir`` or
``$SPIKEFLOW_DATA`` (with only the t10k files: train = images 0..7999, test =
8000..9999). The seed presets rebuild the seed networks with their
hyper-parameters; where a seed scales its loss differently from the batch mean
(seed 003 sums it), the equivalent learning rate for the mean loss is given (SGD is
linear in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig

__all__ = ["PRESETS", "Preset", "build_model", "get_preset", "load_data"]

MEMBRANE_READOUTS = ("max", "mean", "last", "sum")
SPIKING_READOUTS = ("count", "count-mse", "first-spike")


@dataclass(frozen=True)
class Preset:
    """A named training setup.

    Attributes:
        name: the preset name (``TrainConfig.preset``).
        description: one line for ``--help`` and listings.
        load_data: ``load_data(config) -> (x_train, y_train, x_test, y_test)``: static
            inputs ``[N, *features]`` or, for ``input == "sequence"``, spike trains
            ``[N, T, *features]``; labels ``[N]`` (int64).
        build: ``build(config) -> torch.nn.Module`` mapping ``[T, B, *features]`` to
            ``(output [T, B, classes], state)``.
        classes: number of classes.
        input: ``"static"`` (encoded by ``config.encoding``) or ``"sequence"``.
        defaults: the preset's values for :data:`~spikeflow.train.config.DEFAULTS` fields.
        readouts: the readouts the network supports.
        has_ann: whether ``ann=True`` (the ANN twin) applies.
        images: whether inputs are ``[C, H, W]`` images (``augment`` applies).
        threads: torch intra-op threads that suit the model (None: torch's default).
    """

    name: str
    description: str
    load_data: Callable[["TrainConfig"], tuple]
    build: Callable[["TrainConfig"], torch.nn.Module]
    classes: int
    input: str = "static"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    readouts: tuple[str, ...] = MEMBRANE_READOUTS + SPIKING_READOUTS
    has_ann: bool = False
    images: bool = False
    threads: Optional[int] = None


# ------------------------------------------------------------------------- data sets


def _digits(config: "TrainConfig") -> tuple:
    from ..data import load_digits

    return tuple(load_digits())


def _mnist_images(config: "TrainConfig") -> tuple:
    from ..data import load_mnist_splits

    return tuple(load_mnist_splits(config.data_dir))  # [N, 1, 28, 28] in [0, 1]


def _mnist_centred(config: "TrainConfig") -> tuple:
    """Seed 001's ``Normalize((0.5,), (1.0,))``: pixels in [-0.5, 0.5]."""
    x_train, y_train, x_test, y_test = _mnist_images(config)
    return x_train - 0.5, y_train, x_test - 0.5, y_test


def _randman(config: "TrainConfig") -> tuple:
    """Seed 003's Randman: 2 classes, 16 units, 100 steps, 2-D manifolds, one spike
    per unit, alpha 2, 1000 samples per class, seed 42; the first 80 % train."""
    from ..data import make_spike_raster_dataset

    x, y = make_spike_raster_dataset(
        nb_classes=2, nb_units=16, nb_steps=config.steps, dim_manifold=2, nb_spikes=1,
        nb_samples=1000, alpha=2.0, shuffle=True, seed=42,
    )
    n_train = int(0.8 * len(y))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# --------------------------------------------------------------------------- presets


def _build(name: str) -> Callable[["TrainConfig"], torch.nn.Module]:
    def build(config: "TrainConfig") -> torch.nn.Module:
        from . import models

        return getattr(models, f"build_{name}")(config)

    build.__name__ = f"build_{name}"
    return build


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "digits-mlp": Preset(
            name="digits-mlp",
            description="scikit-learn 8x8 digits, 64-128-10 spiking MLP (LIF hidden layer)",
            load_data=_digits,
            build=_build("digits_mlp"),
            classes=10,
            has_ann=True,
            threads=1,
        ),
        "mnist-mlp": Preset(
            name="mnist-mlp",
            description="MNIST, 784-800-10 spiking MLP, direct input for 8 steps",
            load_data=_mnist_images,
            build=_build("mnist_mlp"),
            classes=10,
            defaults={
                "epochs": 15, "batch_size": 128, "lr": 1e-3, "hidden": 800, "steps": 8, "scheduler": "cosine",
            },
            has_ann=True,
            images=True,
        ),
        "mnist-cnn": Preset(
            name="mnist-cnn",
            description="MNIST, 2 conv blocks (32, 64 channels, BN, max-pool), 256 LIF, direct input for 4 steps, shifts",
            load_data=_mnist_images,
            build=_build("mnist_cnn"),
            classes=10,
            defaults={
                "epochs": 20, "batch_size": 64, "lr": 1e-3, "hidden": 32, "steps": 4, "scheduler": "cosine",
                "augment": 2,
            },
            has_ann=True,
            images=True,
        ),
        "randman": Preset(
            name="randman",
            description="Randman (seed 003's task and network) with LSUV initialisation and a cosine schedule",
            load_data=_randman,
            build=_build("seed003"),
            classes=2,
            input="sequence",
            defaults={
                "epochs": 20, "batch_size": 48, "lr": 0.48, "optimizer": "sgd", "momentum": 0.9, "hidden": 32,
                "steps": 100, "encoding": "none", "readout": "count", "beta": 0.95, "scheduler": "cosine",
                "init": "lsuv",
            },
            readouts=SPIKING_READOUTS,
            threads=1,
        ),
        "seed001": Preset(
            name="seed001",
            description="seed 001: 784-100-10 graded LIF (penalty reset, delayed output), SGD, 128 steps",
            load_data=_mnist_centred,
            build=_build("seed001"),
            classes=10,
            defaults={
                "epochs": 8, "batch_size": 1000, "lr": 0.1, "optimizer": "sgd", "momentum": 0.5, "hidden": 100,
                # its OutputDataToSpikingPerceptronLayer(average_output=False) *averages*
                # over time (the flag's branches are swapped), whatever its comment says
                "steps": 128, "encoding": "multiplicative", "readout": "mean",
            },
            readouts=MEMBRANE_READOUTS,
        ),
        "seed003": Preset(
            name="seed003",
            description="seed 003: Randman, 16-32-2 recurrent current-LIF network, SGD (its summed loss)",
            load_data=_randman,
            build=_build("seed003"),
            classes=2,
            input="sequence",
            defaults={
                # the seed: SGD(2e-2, momentum 0.9) on the sum over its 48 samples of each
                # sample's cross-entropy divided by the number of classes (2; its
                # `one_hot_crossentropy` runs per sample under vmap): lr 2e-2 * 48 / 2 here
                "epochs": 20, "batch_size": 48, "lr": 2e-2 * 48 / 2, "optimizer": "sgd", "momentum": 0.9,
                "hidden": 32, "steps": 100, "encoding": "none", "readout": "count", "beta": 0.95,
            },
            readouts=SPIKING_READOUTS,
            threads=1,
        ),
        "seed004": Preset(
            name="seed004",
            description="seed 004: 784-128-10 current LIF, latency input over 100 steps, spike-count MSE",
            load_data=_mnist_images,
            build=_build("seed004"),
            classes=10,
            defaults={
                "epochs": 20, "batch_size": 256, "lr": 0.01, "amsgrad": True, "hidden": 128, "steps": 100,
                "encoding": "latency", "latency_threshold": 0.25, "readout": "count-mse", "count_on": 100.0,
                "count_off": 10.0, "surrogate": "straight_through",
            },
            readouts=SPIKING_READOUTS,
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


def build_model(config: "TrainConfig") -> torch.nn.Module:
    """The network of ``config.preset`` (uses the global torch RNG for initialisation)."""
    return get_preset(config.preset).build(config)


def load_data(config: "TrainConfig") -> tuple:
    """The data set of ``config.preset``: ``(x_train, y_train, x_test, y_test)``."""
    return get_preset(config.preset).load_data(config)
