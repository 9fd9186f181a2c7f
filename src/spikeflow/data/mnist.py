"""MNIST-format folders (MNIST, Fashion-MNIST, KMNIST): IDX files on local disk.

A folder holds the four standard files, each plain or gzip-compressed::

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

Nothing is downloaded. The folder is ``data_dir`` or, when that is None, the
``SPIKEFLOW_DATA`` environment variable (on the command line: ``--data-dir``). The
files may sit in the folder itself or in a ``mnist/`` subfolder of it, so
``SPIKEFLOW_DATA`` can name a data root such as ``shared/data``.

Which images make up ``train`` and ``test`` is the :class:`SplitPolicy`:

- ``official``: ``train`` is the train-* files (60,000 images for MNIST), ``test``
  the t10k-* files (10,000).
- ``t10k-fixed``: the project's fixed split of the 10,000 t10k images, for machines
  that only hold the test set: ``train`` = images 0..7999, ``test`` = images
  8000..9999 (:data:`T10K_TRAIN`, :data:`T10K_TEST`). The train-* files, if any,
  are ignored.
- ``auto`` (the default): ``official`` when the train-* files are there, else
  ``t10k-fixed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch

from .._choice import Choice
from .idx import read_idx

__all__ = [
    "DATA_ENV",
    "FILE_NAMES",
    "Mnist",
    "MnistSplits",
    "Split",
    "SplitPolicy",
    "T10K_TEST",
    "T10K_TRAIN",
    "find_mnist_dir",
    "load_mnist",
    "load_mnist_splits",
]

DATA_ENV = "SPIKEFLOW_DATA"
"""The environment variable naming the data folder when ``data_dir`` is None."""

FILE_NAMES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""``(images, labels)`` file names (without ``.gz``) of the official train and test sets."""

T10K_SIZE = 10_000
T10K_TRAIN = range(0, 8_000)
"""Indices into the t10k files that form ``train`` under ``SplitPolicy.T10K_FIXED``."""
T10K_TEST = range(8_000, T10K_SIZE)
"""Indices into the t10k files that form ``test`` under ``SplitPolicy.T10K_FIXED``."""

N_CLASSES = 10
_SUBFOLDER = "mnist"


class Split(Choice):
    """Which part of the data: ``train`` or ``test``."""

    TRAIN = "train"
    TEST = "test"

    @classmethod
    def _what(cls) -> str:
        return "split"


class SplitPolicy(Choice):
    """Where ``train`` and ``test`` come from (see the module docstring)."""

    AUTO = "auto"
    OFFICIAL = "official"
    T10K_FIXED = "t10k-fixed"

    @classmethod
    def _what(cls) -> str:
        return "split policy"


class Mnist(NamedTuple):
    """One split of an MNIST-format data set.

    Attributes:
        images: ``[N, 1, H, W]`` float32 in [0, 1] (``[N, H*W]`` with ``flatten=True``);
            H = W = 28 for MNIST, Fashion-MNIST and KMNIST.
        labels: ``[N]`` int64 in 0..9.
    """

    images: torch.Tensor
    labels: torch.Tensor


class MnistSplits(NamedTuple):
    """Train and test splits, in the order of :class:`spikeflow.data.Digits`
    (what a training preset's ``load_data`` returns)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _expected_names() -> str:
    return ", ".join(f"{name}[.gz]" for pair in FILE_NAMES.values() for name in pair)


_HOW_TO_POINT = (
    f"point spikeflow at the folder with --data-dir DIR (the data_dir argument) or the "
    f"{DATA_ENV} environment variable"
)


def _find_file(folder: Path, name: str) -> Optional[Path]:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_set(folder: Path, which: str) -> bool:
    return all(_find_file(folder, name) is not None for name in FILE_NAMES[which])


def find_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the MNIST-format files.

    ``data_dir`` (else ``$SPIKEFLOW_DATA``) itself when it holds a train or t10k
    pair of files, else its ``mnist/`` subfolder when that does.

    Raises:
        FileNotFoundError: no folder was given, it does not exist, or neither it nor
            its ``mnist/`` subfolder holds the files; the message names the folder,
            the expected file names and the ways to point at the data.
        TypeError: ``data_dir`` is not a path.
    """
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a folder path (str or os.PathLike) or None, got {type(data_dir).__name__}")
    if data_dir is None:
        env = os.environ.get(DATA_ENV, "").strip()
        if not env:
            raise FileNotFoundError(
                f"no MNIST folder given: {_HOW_TO_POINT}. The folder must hold "
                f"{_expected_names()}"
            )
        data_dir, origin = env, f" (from {DATA_ENV})"
    else:
        origin = ""
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {folder}{origin} does not exist or is not a folder; it must hold "
            f"{_expected_names()}; {_HOW_TO_POINT}"
        )
    for candidate in (folder, folder / _SUBFOLDER):
        if candidate.is_dir() and any(_has_set(candidate, which) for which in FILE_NAMES):
            return candidate
    raise FileNotFoundError(
        f"no MNIST files in {folder}{origin} (nor in {folder / _SUBFOLDER}): expected "
        f"{_expected_names()} (at least the t10k pair); {_HOW_TO_POINT}"
    )


def _load_pair(folder: Path, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, H, W]`` uint8 and labels ``[N]`` uint8 of one file pair, checked."""
    paths = []
    for name in FILE_NAMES[which]:
        found = _find_file(folder, name)
        if found is None:
            raise FileNotFoundError(
                f"{folder / name}[.gz] not found: the MNIST folder {folder} must hold "
                f"{_expected_names()}; {_HOW_TO_POINT}"
            )
        paths.append(found)
    image_path, label_path = paths
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{image_path}: expected uint8 images [N, H, W], got {images.dtype} "
            f"with shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{label_path}: expected uint8 labels [N], got {labels.dtype} "
            f"with shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(images)} images but {label_path} holds "
            f"{len(labels)} labels; the counts must agree"
        )
    if len(images) == 0:
        raise ValueError(f"{image_path} holds no images; expected an MNIST-format file with at least one image")
    if labels.size and int(labels.max()) >= N_CLASSES:
        bad = int(np.flatnonzero(labels >= N_CLASSES)[0])
        raise ValueError(
            f"{label_path}: labels must be in 0..{N_CLASSES - 1}, label {bad} is {labels[bad]}"
        )
    return images, labels


def _select(
    folder: Path, split: Split, policy: SplitPolicy, pairs: dict
) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images and labels of ``split``; ``pairs`` caches file pairs by name."""

    def pair(which: str) -> tuple[np.ndarray, np.ndarray]:
        if which not in pairs:
            pairs[which] = _load_pair(folder, which)
        return pairs[which]

    if policy is SplitPolicy.AUTO:
        policy = SplitPolicy.OFFICIAL if _has_set(folder, "train") else SplitPolicy.T10K_FIXED
    if policy is SplitPolicy.OFFICIAL:
        return pair("train" if split is Split.TRAIN else "t10k")
    images, labels = pair("t10k")
    if len(images) != T10K_SIZE:
        raise ValueError(
            f"the fixed t10k split (train = images 0..7999, test = 8000..9999) needs the "
            f"{T10K_SIZE}-image t10k files; {folder} holds {len(images)} images"
        )
    index = T10K_TRAIN if split is Split.TRAIN else T10K_TEST
    window = slice(index.start, index.stop)
    return images[window], labels[window]


def _to_tensors(images: np.ndarray, labels: np.ndarray, flatten: bool) -> Mnist:
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))  # [N, H, W]
    x = x.reshape(len(images), -1) if flatten else x.unsqueeze(1)  # [N, H*W] or [N, 1, H, W]
    y = torch.from_numpy(labels.astype(np.int64))  # [N]
    return Mnist(x, y)


def _check_flatten(flatten: object) -> None:
    if not isinstance(flatten, bool):
        raise ValueError(f"flatten must be True or False, got {flatten!r}")


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    split: Split | str = "train",
    *,
    split_policy: SplitPolicy | str = "auto",
    flatten: bool = False,
) -> Mnist:
    """Load one split of an MNIST-format folder (MNIST, Fashion-MNIST, KMNIST).

    Args:
        data_dir: the folder (see :func:`find_mnist_dir`); None reads ``$SPIKEFLOW_DATA``.
        split: ``"train"`` or ``"test"`` (or a :class:`Split`).
        split_policy: ``"auto"``, ``"official"`` or ``"t10k-fixed"`` (or a
            :class:`SplitPolicy`). With only the t10k files (as in the project's
            shared data), ``auto`` gives train = t10k images 0..7999 (8000 images) and
            test = 8000..9999 (2000 images).
        flatten: return images as ``[N, H*W]`` instead of ``[N, 1, H, W]``.

    Returns:
        :class:`Mnist` ``(images, labels)``: float32 pixels in [0, 1], int64 labels.

    Raises:
        FileNotFoundError: no folder, or a needed file is missing (the message names
            the folder, the file names, ``--data-dir`` and ``SPIKEFLOW_DATA``).
        IdxError: a file is not valid IDX (a ``ValueError``).
        ValueError: a bad ``split``/``split_policy``; images that are not uint8
            ``[N, H, W]``; image and label counts that differ; labels outside 0..9;
            ``t10k-fixed`` on t10k files that do not hold 10,000 images; files
            without images; ``flatten`` not a bool.
        TypeError: ``data_dir`` is not a path.
    """
    split = Split.parse(split)
    policy = SplitPolicy.parse(split_policy)
    _check_flatten(flatten)
    folder = find_mnist_dir(data_dir)
    return _to_tensors(*_select(folder, split, policy, {}), flatten)


def load_mnist_splits(
    data_dir: str | os.PathLike | None = None,
    *,
    split_policy: SplitPolicy | str = "auto",
    flatten: bool = False,
) -> MnistSplits:
    """Both splits of :func:`load_mnist` as ``(x_train, y_train, x_test, y_test)``
    (each file is read once).

    Raises:
        As :func:`load_mnist`.
    """
    policy = SplitPolicy.parse(split_policy)
    _check_flatten(flatten)
    folder = find_mnist_dir(data_dir)
    pairs: dict = {}
    train = _to_tensors(*_select(folder, Split.TRAIN, policy, pairs), bool(flatten))
    test = _to_tensors(*_select(folder, Split.TEST, policy, pairs), bool(flatten))
    return MnistSplits(train.images, train.labels, test.images, test.labels)
