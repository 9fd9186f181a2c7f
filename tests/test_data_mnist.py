"""MNIST-format folders: synthetic IDX folders (always run) and the real data (when present)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.data import (
    IdxError,
    SplitPolicy,
    find_mnist_dir,
    load_mnist,
    load_mnist_splits,
    write_idx,
)
from spikeflow.data.mnist import DATA_ENV, T10K_TEST, T10K_TRAIN

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _images(n: int, size: int, offset: int) -> np.ndarray:
    """Image i is filled with (offset + i) % 256: its pixels identify it."""
    values = (offset + np.arange(n)) % 256
    return np.broadcast_to(values[:, None, None], (n, size, size)).astype(np.uint8)


def _write_set(folder: Path, which: str, n: int, *, size=28, offset=0, gz=False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    image_name, label_name = NAMES[which]
    write_idx(folder / f"{image_name}{suffix}", _images(n, size, offset))
    write_idx(folder / f"{label_name}{suffix}", ((offset + np.arange(n)) % 10).astype(np.uint8))


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)


def test_official_split_when_train_files_exist(tmp_path, no_env):
    _write_set(tmp_path, "train", 30, offset=0)
    _write_set(tmp_path, "t10k", 20, offset=100, gz=True)
    x, y = load_mnist(tmp_path, "train")
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (30,) and y.dtype == torch.int64
    torch.testing.assert_close(x[:, 0, 0, 0], torch.arange(30, dtype=torch.float32) / 255)
    torch.testing.assert_close(y, torch.arange(30) % 10)
    x, y = load_mnist(tmp_path, "test")
    assert x.shape == (20, 1, 28, 28)
    torch.testing.assert_close(x[:, 0, 5, 7], (100 + torch.arange(20, dtype=torch.float32)) / 255)


def test_flatten_and_pixel_range(tmp_path, no_env):
    folder = tmp_path / "d"
    folder.mkdir()
    write_idx(folder / NAMES["train"][0], np.array([[[0, 255], [128, 1]]], dtype=np.uint8))
    write_idx(folder / NAMES["train"][1], np.array([3], dtype=np.uint8))
    _write_set(folder, "t10k", 1, size=2)
    x, y = load_mnist(folder, "train", flatten=True)
    assert x.shape == (1, 4)
    torch.testing.assert_close(x[0], torch.tensor([0.0, 1.0, 128 / 255, 1 / 255]))
    assert y.tolist() == [3]


def test_t10k_only_uses_the_fixed_split(tmp_path, no_env):
    _write_set(tmp_path, "t10k", 10_000, size=2, gz=True)
    x_train, y_train = load_mnist(tmp_path, "train")
    x_test, y_test = load_mnist(tmp_path, split="test")
    assert (len(x_train), len(x_test)) == (8000, 2000) == (len(T10K_TRAIN), len(T10K_TEST))
    expected = torch.arange(10_000) % 256
    assert torch.equal((x_train[:, 0, 0, 0] * 255).round().long(), expected[:8000])
    assert torch.equal((x_test[:, 0, 1, 1] * 255).round().long(), expected[8000:])
    assert torch.equal(y_test, torch.arange(8000, 10_000) % 10)
    both = load_mnist_splits(tmp_path, flatten=True)
    assert both.x_train.shape == (8000, 4) and both.x_test.shape == (2000, 4)
    assert torch.equal(both.y_train, y_train) and torch.equal(both.y_test, y_test)


def test_policy_t10k_fixed_ignores_train_files(tmp_path, no_env):
    _write_set(tmp_path, "train", 12, size=2, offset=50)
    _write_set(tmp_path, "t10k", 10_000, size=2)
    x, _ = load_mnist(tmp_path, "train", split_policy=SplitPolicy.T10K_FIXED)
    assert len(x) == 8000
    assert len(load_mnist(tmp_path, "train", split_policy="auto").images) == 12
    assert len(load_mnist(tmp_path, "test", split_policy="official").images) == 10_000


def test_policy_official_without_train_files_names_them(tmp_path, no_env):
    _write_set(tmp_path, "t10k", 20)
    pattern = r"train-images-idx3-ubyte\[\.gz\] not found.*--data-dir.*SPIKEFLOW_DATA"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist(tmp_path, "train", split_policy="official")


def test_fixed_split_needs_ten_thousand_images(tmp_path, no_env):
    _write_set(tmp_path, "t10k", 20)
    pattern = "fixed t10k split .* needs the 10000-image t10k files; .* holds 20 images"
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path, "train")


def test_folder_from_environment_and_subfolder(tmp_path, monkeypatch):
    _write_set(tmp_path / "mnist", "train", 4, size=2)
    _write_set(tmp_path / "mnist", "t10k", 3, size=2)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))  # a data root with mnist/ inside
    assert find_mnist_dir() == tmp_path / "mnist"
    assert len(load_mnist(split="test").labels) == 3
    other = tmp_path / "fashion"
    _write_set(other, "train", 6, size=2)
    assert len(load_mnist(other).labels) == 6  # the argument wins over the environment


def test_no_folder_given(no_env):
    pattern = r"no MNIST folder given.*--data-dir.*SPIKEFLOW_DATA.*t10k-images-idx3-ubyte\[\.gz\]"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist()


def test_missing_folder_names_it_and_the_ways_to_point(tmp_path, no_env):
    missing = tmp_path / "nowhere"
    pattern = r"nowhere does not exist.*train-images-idx3-ubyte\[\.gz\].*--data-dir DIR.*SPIKEFLOW"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist(missing)


def test_missing_folder_from_environment_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=r"gone \(from SPIKEFLOW_DATA\) does not exist"):
        load_mnist()


def test_empty_folder(tmp_path, no_env):
    pattern = r"no MNIST files in .*t10k-labels-idx1-ubyte\[\.gz\].*SPIKEFLOW_DATA"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist(tmp_path)


def test_counts_must_agree(tmp_path, no_env):
    _write_set(tmp_path, "train", 5, size=2)
    write_idx(tmp_path / NAMES["train"][1], np.zeros(4, dtype=np.uint8))
    pattern = r"holds 5 images but .*train-labels-idx1-ubyte holds 4 labels"
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path)


def test_labels_must_be_digits(tmp_path, no_env):
    _write_set(tmp_path, "train", 5, size=2)
    write_idx(tmp_path / NAMES["train"][1], np.array([0, 1, 12, 3, 4], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9, label 2 is 12"):
        load_mnist(tmp_path)


def test_images_must_be_uint8_3d(tmp_path, no_env):
    _write_set(tmp_path, "train", 5, size=2)
    write_idx(tmp_path / NAMES["train"][0], np.zeros((5, 4), dtype=np.float32))
    pattern = r"expected uint8 images \[N, H, W\], got float32 with shape \(5, 4\)"
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path)


def test_corrupt_file_is_an_idx_error(tmp_path, no_env):
    _write_set(tmp_path, "train", 5, size=2)
    path = tmp_path / NAMES["train"][0]
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IdxError, match="train-images-idx3-ubyte: truncated"):
        load_mnist(tmp_path)


def test_bad_split_names(tmp_path, no_env):
    _write_set(tmp_path, "train", 2, size=2)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_mnist(tmp_path, "validation")
    with pytest.raises(ValueError, match="unknown split policy 'random'"):
        load_mnist(tmp_path, split_policy="random")


# ---------------------------------------------------------------- the real data

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def _real_folder() -> Path:
    """``$SPIKEFLOW_DATA`` if it holds MNIST files, else the shared folder; else skip."""
    tried = []
    for source in (os.environ.get(DATA_ENV), _SHARED):
        if source:
            try:
                return find_mnist_dir(source)
            except FileNotFoundError:
                tried.append(str(source))
    pytest.skip(f"no MNIST data (tried {', '.join(tried)}): set {DATA_ENV} to an MNIST folder")


@pytest.mark.mnist
def test_real_mnist_fixed_split():
    folder = _real_folder()
    train_files = ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
    if any((folder / name).exists() for name in train_files):
        pytest.skip(f"{folder} holds the official training set; the fixed split is for t10k only")
    d = load_mnist_splits(folder)
    assert d.x_train.shape == (8000, 1, 28, 28) and d.x_test.shape == (2000, 1, 28, 28)
    assert d.y_train.shape == (8000,) and d.y_test.shape == (2000,)
    for x in (d.x_train, d.x_test):
        assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert 0.1 < float(x.mean()) < 0.15  # MNIST's mean intensity is about 0.13
    for y in (d.y_train, d.y_test):
        share = torch.bincount(y, minlength=10).double() / len(y)
        assert float(share.min()) > 0.07 and float(share.max()) < 0.14, share
    # the first labels of the official MNIST test set
    assert d.y_train[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.mnist
def test_real_mnist_checksums():
    folder = _real_folder()
    sums = folder / "MD5SUMS"
    if not sums.is_file():
        pytest.skip(f"{folder} has no MD5SUMS file")
    entries = [line.split() for line in sums.read_text().splitlines() if line.strip()]
    assert entries
    for digest, name in entries:
        assert hashlib.md5((folder / name.lstrip("*")).read_bytes()).hexdigest() == digest, name
