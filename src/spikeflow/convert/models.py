"""ANN architectures that the conversion presets train and convert.

Every builder takes the input shape ``(C, H, W)``, the number of classes and an
``activation`` factory (``torch.nn.ReLU`` by default; a QCFS, ASN-transfer or
clamped activation for the codings that train the ANN with one), and returns an
ordinary ``torch.nn.Module`` on ``[B, C, H, W]`` images that :func:`spikeflow.convert.trace`
accepts.

- :func:`seed002_net`: seed 002's example Keras model (Conv2D(2, 3) -> MaxPool(2) ->
  Dense 784 -> 500 -> 84 -> 10).
- :func:`lenet5`: LeNet-5 (LeCun et al. 1998) with ReLUs and average pooling (its
  subsampling layers): 6 and 16 5x5 convolutions, 120-84-10.
- :func:`vgg`: a VGG-style network: 3x3 convolutions with BatchNorm in stages
  separated by 2x2 max pooling, then a hidden dense layer.
- :func:`resnet18`: ResNet-18 (He et al. 2016) in its CIFAR form (3x3 stem, no stem
  pooling, four stages of two basic blocks with BatchNorm and residual additions,
  global average pooling).
"""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "BasicBlock", "ResNet18", "lenet5", "resnet18", "seed002_net", "vgg"]

Activation = Callable[[], nn.Module]


def _spatial(shape: Sequence[int], classes: int = 1, activation: Activation = nn.ReLU) -> tuple[int, int, int]:
    """``(channels, height, width)`` of ``shape``, with ``classes`` and ``activation``
    checked too.

    Raises:
        ValueError: ``shape`` is not three positive ints, or ``classes`` < 1.
        TypeError: ``activation`` is not callable.
    """
    try:
        values = tuple(shape)
    except TypeError:
        values = ()
    if len(values) != 3 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in values):
        raise ValueError(f"input_shape must be (channels, height, width) of positive ints, got {shape!r}")
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"classes must be an int >= 1, got {classes!r}")
    if not callable(activation):
        raise TypeError(f"activation must be a callable that makes a module (such as torch.nn.ReLU), got {activation!r}")
    return int(values[0]), int(values[1]), int(values[2])


def _flat_features(features: nn.Module, shape: Sequence[int]) -> int:
    """Features after ``features`` for one input of ``shape`` (in eval mode, so that
    BatchNorm takes one sample).

    Raises:
        ValueError: the input is too small for the architecture's pooling.
    """
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, *shape)).flatten(1).shape[1])
    except RuntimeError as exc:
        raise ValueError(f"input_shape {tuple(shape)} is too small for this architecture: {exc}") from exc
    finally:
        features.train(was_training)


def seed002_net(input_shape=(1, 28, 28), classes: int = 10, activation: Activation = nn.ReLU) -> nn.Module:
    """Seed 002's example: ``Conv2D(2, 3, relu) -> MaxPool2D(2) -> Flatten -> Dense(784,
    relu) -> Dense(500, relu) -> Dense(84, relu) -> Dense(classes)`` (the softmax is
    left to the loss)."""
    c, h, w = _spatial(input_shape, classes, activation)
    features = nn.Sequential(nn.Conv2d(c, 2, 3), activation(), nn.MaxPool2d(2), nn.Flatten())
    n = _flat_features(features, (c, h, w))
    return nn.Sequential(
        *features,
        nn.Linear(n, 784), activation(),
        nn.Linear(784, 500), activation(),
        nn.Linear(500, 84), activation(),
        nn.Linear(84, classes),
    )


def lenet5(input_shape=(1, 28, 28), classes: int = 10, activation: Activation = nn.ReLU) -> nn.Module:
    """LeNet-5: ``Conv(6, 5x5, pad 2) -> act -> AvgPool(2) -> Conv(16, 5x5) -> act ->
    AvgPool(2) -> 120 -> act -> 84 -> act -> classes``. On inputs smaller than 16x16
    (the 8x8 digits) the second convolution is padded too, so that it fits."""
    c, h, w = _spatial(input_shape, classes, activation)
    pad2 = 2 if min(h, w) < 16 else 0
    features = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2), activation(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad2), activation(), nn.AvgPool2d(2),
        nn.Flatten(),
    )
    n = _flat_features(features, (c, h, w))
    return nn.Sequential(
        *features,
        nn.Linear(n, 120), activation(),
        nn.Linear(120, 84), activation(),
        nn.Linear(84, classes),
    )


def vgg(
    input_shape=(1, 28, 28),
    classes: int = 10,
    activation: Activation = nn.ReLU,
    stages: Sequence[int] = (32, 64),
    hidden: int = 128,
) -> nn.Module:
    """VGG-style: per stage two ``Conv(3x3, pad 1) -> BatchNorm -> act`` then
    ``MaxPool(2)``; then ``Dropout(0.25) -> Linear(hidden) -> act -> Dropout(0.25) ->
    Linear(classes)``."""
    c, h, w = _spatial(input_shape, classes, activation)
    layers: list[nn.Module] = []
    channels = c
    for width in stages:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), activation()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = _flat_features(features, (c, h, w))
    return nn.Sequential(
        *features,
        nn.Dropout(0.25), nn.Linear(n, hidden), activation(),
        nn.Dropout(0.25), nn.Linear(hidden, classes),
    )


class BasicBlock(nn.Module):
    """``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``, the shortcut a 1x1
    convolution with BatchNorm where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, activation: Activation) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = activation()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = activation()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for CIFAR-sized inputs (``width`` channels in the first stage)."""

    def __init__(self, input_shape=(3, 32, 32), classes: int = 10, activation: Activation = nn.ReLU, width: int = 64) -> None:
        super().__init__()
        c, _, _ = _spatial(input_shape, classes, activation)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), activation())
        blocks = []
        cin = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**stage
            blocks += [BasicBlock(cin, cout, stride, activation), BasicBlock(cout, cout, 1, activation)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def resnet18(input_shape=(3, 32, 32), classes: int = 10, activation: Activation = nn.ReLU, width: int = 64) -> nn.Module:
    """ResNet-18, CIFAR form (see :class:`ResNet18`)."""
    return ResNet18(input_shape, classes, activation, width)


#: Builders by preset name.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "seed002": seed002_net,
    "lenet5": lenet5,
    "vgg": vgg,
    "resnet18": resnet18,
}
