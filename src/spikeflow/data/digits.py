"""scikit-learn's handwritten digits as a fixed, stratified train/test split.

1797 grey-level images of 8x8 pixels (values 0..16 in the source), ten classes,
about 180 per class. The images ship inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Digits", "load_digits"]

N_FEATURES = 64
N_CLASSES = 10
_MAX_PIXEL = 16.0


class Digits(NamedTuple):
    """A train/test split of the digits data.

    Attributes:
        x_train: ``[N_train, 64]`` float32 pixels in [0, 1] (row-major 8x8 images).
        y_train: ``[N_train]`` int64 labels 0..9.
        x_test: ``[N_test, 64]`` float32 pixels in [0, 1].
        y_test: ``[N_test]`` int64 labels 0..9.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _import_sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data set needs scikit-learn; install it with "
            "`pip install spikeflow[cli]` (or `pip install scikit-learn`)"
        ) from error
    return datasets


def _stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified split: each class contributes ``round(n_c * f)`` test
    samples, drawn with a NumPy generator seeded by ``seed``. Both index arrays are
    sorted, so the split does not depend on anything but ``(labels, f, seed)``."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(len(members) * test_fraction))
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)  # sorted
    return train_idx, test_idx


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """Load the 8x8 digits, scaled to [0, 1], split into train and test.

    Args:
        test_fraction: share of each class put in the test split, in (0, 1).
        seed: seed of the split (the split is the same on every machine for a
            given ``(test_fraction, seed)``; it does not touch the global RNGs).

    Returns:
        :class:`Digits` ``(x_train, y_train, x_test, y_test)``; with the defaults
        1438 training and 359 test samples.

    Raises:
        ImportError: scikit-learn is not installed (``pip install spikeflow[cli]``).
        ValueError: ``test_fraction`` is not a number in (0, 1) or leaves a split
            empty; ``seed`` is not an int >= 0.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float, np.integer, np.floating))
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    datasets = _import_sklearn_datasets()
    bunch = datasets.load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / _MAX_PIXEL  # [1797, 64]
    y = np.asarray(bunch.target, dtype=np.int64)  # [1797]
    train_idx, test_idx = _stratified_split(y, float(test_fraction), int(seed))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(
            f"test_fraction {test_fraction!r} leaves the {'test' if len(test_idx) == 0 else 'training'} split "
            f"empty (about 180 images per class); expected a value that keeps at least one image on each side"
        )
    return Digits(
        torch.from_numpy(np.ascontiguousarray(x[train_idx])),
        torch.from_numpy(np.ascontiguousarray(y[train_idx])),
        torch.from_numpy(np.ascontiguousarray(x[test_idx])),
        torch.from_numpy(np.ascontiguousarray(y[test_idx])),
    )
