"""Named conversion set-ups: an architecture, its data and how to train it.

``spikeflow convert --preset NAME`` trains the preset's ANN on the chosen data set
(scikit-learn's 8x8 digits by default, MNIST from ``--data-dir``), converts it and
compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F

from .models import ARCHITECTURES

__all__ = ["ConversionPreset", "DATASETS", "PRESETS", "get_preset", "load_images"]

DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class ConversionPreset:
    """One conversion set-up.

    Attributes:
        name: the ``--preset`` value.
        description: one line for ``spikeflow convert --help``.
        architecture: a key of :data:`spikeflow.convert.models.ARCHITECTURES`.
        cifar_shape: feed 3x32x32 images (the gray images resized and repeated over
            three channels), for the CIFAR-form ResNet.
        epochs, lr, batch_size, shift, weight_decay: ANN training on MNIST (:func:`fit_ann`).
        digits_epochs, digits_lr: on the 8x8 digits (1438 training images, a sixth of
            an MNIST epoch) more epochs at a larger learning rate.
        timesteps: the time steps evaluated by default.
        options: extra builder arguments.
    """

    name: str
    description: str
    architecture: str
    epochs: int
    lr: float = 1e-3
    batch_size: int = 64
    shift: int = 0
    weight_decay: float = 0.0
    cifar_shape: bool = False
    digits_epochs: int = 40
    digits_lr: float = 1e-2
    timesteps: tuple[int, ...] = (8, 16, 32, 64, 128)
    options: Mapping[str, Any] = field(default_factory=dict)


PRESETS: dict[str, ConversionPreset] = {
    p.name: p
    for p in (
        ConversionPreset("lenet5", "LeNet-5 (ReLU, average pooling), 20 epochs", "lenet5", epochs=20, lr=2e-3, shift=1),
        ConversionPreset("seed002", "seed 002's example CNN (Conv 2x3x3, max pooling, 784-500-84-10), 2 epochs",
                         "seed002", epochs=2, batch_size=32),
        ConversionPreset("vgg", "VGG-style CNN with BatchNorm and max pooling (32-32-M-64-64-M-128), 15 epochs",
                         "vgg", epochs=15, shift=2),
        ConversionPreset("resnet18", "ResNet-18 (CIFAR form, BatchNorm, residual adds) on 3x32x32 inputs, 1 epoch",
                         "resnet18", epochs=1, batch_size=128, cifar_shape=True, timesteps=(16, 32, 64, 128)),
    )
}


def get_preset(name: str) -> ConversionPreset:
    """The preset called ``name`` (a clear error listing them otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown conversion preset {name!r}; expected one of {sorted(PRESETS)}") from None


def _to_cifar_shape(x: torch.Tensor) -> torch.Tensor:
    """Gray ``[N, 1, H, W]`` to ``[N, 3, 32, 32]`` (bilinear resize, channel repeat)."""
    return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)


def load_images(dataset: str = "digits", data_dir: Optional[str] = None, cifar_shape: bool = False) -> tuple:
    """``(x_train, y_train, x_test, y_test)`` as images ``[N, C, H, W]`` in [0, 1].

    ``digits``: scikit-learn's 8x8 digits (1797 images, 80/20 stratified split);
    ``mnist``: an MNIST-format folder (``data_dir`` or ``$SPIKEFLOW_DATA``; the
    project's fixed split of t10k when only those files exist).
    """
    if dataset == "digits":
        from ..data import load_digits

        x_train, y_train, x_test, y_test = load_digits()
        x_train, x_test = x_train.view(-1, 1, 8, 8), x_test.view(-1, 1, 8, 8)
    elif dataset == "mnist":
        from ..data import load_mnist_splits

        x_train, y_train, x_test, y_test = load_mnist_splits(data_dir)
    else:
        raise ValueError(f"unknown data set {dataset!r}; expected one of {list(DATASETS)}")
    if cifar_shape:
        x_train, x_test = _to_cifar_shape(x_train), _to_cifar_shape(x_test)
    return x_train, y_train, x_test, y_test


def training_settings(preset: ConversionPreset, dataset: str) -> tuple[int, float]:
    """``(epochs, lr)`` of the preset's ANN on ``dataset``."""
    if dataset == "digits":
        return preset.digits_epochs, preset.digits_lr
    return preset.epochs, preset.lr


def build_ann(preset: str, input_shape, classes: int, activation=torch.nn.ReLU) -> torch.nn.Module:
    """The preset's untrained ANN for inputs of ``input_shape``."""
    p = get_preset(preset)
    return ARCHITECTURES[p.architecture](tuple(input_shape), classes, activation, **dict(p.options))
