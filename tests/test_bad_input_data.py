"""Bad input at the data loaders' public boundary (spikeflow.data, spikeflow.events,
the conversion presets' data sets): every case raises a clear error that names the
argument or file, what was expected and what came (issue 8).

Cases already covered in tests/test_data_mnist.py, test_randman.py, test_tonic.py
and test_events.py (a missing folder, no folder given, unequal image and label
counts, labels above 9, unknown split names, negative counts, ...) are not repeated.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.convert.presets import load_images
from spikeflow.data import (
    find_mnist_dir,
    load_digits,
    load_mnist,
    load_mnist_splits,
    make_spike_raster_dataset,
    make_spike_times,
    time_major_batches,
    write_idx,
)
from spikeflow.data.mnist import DATA_ENV, FILE_NAMES
from spikeflow.data.tonic import TonicAdapter, collate_time_major, events_to_frames, tonic_dataset
from spikeflow.events import SparseSpikeDataset, to_dense, to_events

SENSOR = (4, 4, 2)


def _events(n: int = 3) -> np.ndarray:
    events = np.zeros(n, dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    events["t"] = np.arange(n)
    return events


def _write_pair(folder: Path, which: str, n: int, size: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = FILE_NAMES[which]
    write_idx(folder / images, np.zeros((n, size, size), dtype=np.uint8))
    write_idx(folder / labels, np.zeros(n, dtype=np.uint8))


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)


# ----------------------------------------------------------------------------- MNIST folders
MNIST_CASES = [
    # (id, setup(tmp_path, monkeypatch) -> call, error, match); the pattern may name {tmp}
    ("data-dir-int", lambda tmp, mp: lambda: load_mnist(3), TypeError,
     r"data_dir must be a folder path \(str or os.PathLike\) or None, got int"),
    ("data-dir-list", lambda tmp, mp: lambda: find_mnist_dir([str(tmp)]), TypeError,
     r"data_dir must be a folder path .* got list"),
    ("data-dir-is-a-file", lambda tmp, mp: (tmp.joinpath("file").write_text("x"), lambda: load_mnist(tmp / "file"))[1],
     FileNotFoundError, r"MNIST folder {tmp}/file does not exist or is not a folder; it must hold "
     r"train-images-idx3-ubyte\[\.gz\].*--data-dir DIR.*SPIKEFLOW_DATA"),
    ("env-blank", lambda tmp, mp: (mp.setenv(DATA_ENV, "   "), load_mnist)[1], FileNotFoundError,
     r"no MNIST folder given: point spikeflow at the folder with --data-dir DIR .* or the SPIKEFLOW_DATA environment variable"),
    ("env-folder-without-files", lambda tmp, mp: (mp.setenv(DATA_ENV, str(tmp)), load_mnist)[1], FileNotFoundError,
     r"no MNIST files in {tmp} \(from SPIKEFLOW_DATA\) \(nor in {tmp}/mnist\): expected train-images-idx3-ubyte"),
    ("env-folder-is-a-file", lambda tmp, mp: (tmp.joinpath("f").write_text("x"), mp.setenv(DATA_ENV, str(tmp / "f")),
                                               load_mnist)[2],
     FileNotFoundError, r"MNIST folder {tmp}/f \(from SPIKEFLOW_DATA\) does not exist or is not a folder"),
    ("empty-data-set", lambda tmp, mp: (_write_pair(tmp, "train", 0), lambda: load_mnist(tmp))[1], ValueError,
     r"{tmp}/train-images-idx3-ubyte holds no images; expected an MNIST-format file with at least one image"),
    ("empty-t10k-only", lambda tmp, mp: (_write_pair(tmp, "t10k", 0), lambda: load_mnist_splits(tmp))[1], ValueError,
     r"t10k-images-idx3-ubyte holds no images"),
    ("split-none", lambda tmp, mp: (_write_pair(tmp, "train", 2), lambda: load_mnist(tmp, None))[1], ValueError,
     r"unknown split None; expected one of \['train', 'test'\]"),
    ("split-index", lambda tmp, mp: (_write_pair(tmp, "train", 2), lambda: load_mnist(tmp, 0))[1], ValueError,
     r"unknown split 0; expected one of \['train', 'test'\]"),
    ("splits-policy", lambda tmp, mp: (_write_pair(tmp, "train", 2), lambda: load_mnist_splits(tmp, split_policy="60k"))[1],
     ValueError, r"unknown split policy '60k'; expected one of \['auto', 'official', 't10k-fixed'\]"),
    ("flatten-str", lambda tmp, mp: (_write_pair(tmp, "train", 2), lambda: load_mnist(tmp, flatten="yes"))[1], ValueError,
     "flatten must be True or False, got 'yes'"),
    ("splits-flatten-int", lambda tmp, mp: lambda: load_mnist_splits(tmp, flatten=1), ValueError,
     "flatten must be True or False, got 1"),
    ("preset-mnist-without-folder", lambda tmp, mp: lambda: load_images("mnist"), FileNotFoundError,
     "no MNIST folder given: .*SPIKEFLOW_DATA"),
    ("preset-mnist-missing-folder", lambda tmp, mp: lambda: load_images("mnist", str(tmp / "gone")), FileNotFoundError,
     r"MNIST folder {tmp}/gone does not exist"),
    ("preset-dataset-unknown", lambda tmp, mp: lambda: load_images("cifar10"), ValueError,
     r"unknown data set 'cifar10'; expected one of \['digits', 'mnist'\]"),
]


@pytest.mark.parametrize("setup,error,match", [c[1:] for c in MNIST_CASES], ids=[c[0] for c in MNIST_CASES])
def test_mnist_loaders_refuse(tmp_path, monkeypatch, no_env, setup, error, match):
    call = setup(tmp_path, monkeypatch)
    with pytest.raises(error, match=match.replace("{tmp}", str(tmp_path))):
        call()


# ----------------------------------------------------------------------------- digits, Randman
OTHER_LOADER_CASES = [
    ("digits-fraction-str", lambda: load_digits("0.2"), ValueError, r"test_fraction must be in \(0, 1\), got '0.2'"),
    ("digits-fraction-bool", lambda: load_digits(True), ValueError, r"test_fraction must be in \(0, 1\), got True"),
    ("digits-fraction-empties-test", lambda: load_digits(1e-6), ValueError,
     "test_fraction 1e-06 leaves the test split empty .*expected a value that keeps at least one image on each side"),
    ("digits-fraction-empties-train", lambda: load_digits(0.9999), ValueError,
     "test_fraction 0.9999 leaves the training split empty"),
    ("digits-seed-negative", lambda: load_digits(0.2, seed=-1), ValueError, "seed must be an int >= 0, got -1"),
    ("digits-seed-float", lambda: load_digits(0.2, seed=1.5), ValueError, "seed must be an int >= 0, got 1.5"),
    ("digits-seed-str", lambda: load_digits(0.2, seed="7"), ValueError, "seed must be an int >= 0, got '7'"),
    ("randman-shuffle-str", lambda: make_spike_raster_dataset(nb_samples=2, shuffle="no"), ValueError,
     "shuffle must be True or False, got 'no'"),
    ("randman-times-samples-0", lambda: make_spike_times(nb_samples=0), ValueError,
     "nb_samples must be an integer >= 1, got 0"),
    ("randman-steps-float", lambda: make_spike_raster_dataset(nb_steps=10.0), ValueError,
     "nb_steps must be an integer >= 1, got 10.0"),
    ("randman-alpha-inf", lambda: make_spike_raster_dataset(alpha=math.inf), ValueError, r"alpha must be in \(0.0, inf\], got inf"),
    ("randman-seed-str", lambda: make_spike_raster_dataset(seed="42"), ValueError,
     "seed must be an int, a numpy Generator or None, got '42'"),
    ("batches-spikes-list", lambda: time_major_batches([[0.0]], torch.zeros(1), 1), TypeError,
     "spikes must be a torch.Tensor, got list"),
    ("batches-labels-numpy", lambda: time_major_batches(torch.zeros(2, 3, 4), np.zeros(2), 1), TypeError,
     "labels must be a torch.Tensor, got ndarray"),
    ("batches-empty-data-set", lambda: time_major_batches(torch.zeros(0, 3, 4), torch.zeros(0), 2), ValueError,
     r"spikes holds no samples \(shape \(0, 3, 4\)\); expected N >= 1"),
    ("batches-batch-size-float", lambda: time_major_batches(torch.zeros(2, 3, 4), torch.zeros(2), 1.5), ValueError,
     "batch_size must be an integer >= 1, got 1.5"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in OTHER_LOADER_CASES], ids=[c[0] for c in OTHER_LOADER_CASES])
def test_digits_and_randman_refuse(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- Tonic adapters and spike events
EVENT_CASES = [
    ("adapter-empty-data-set", lambda: TonicAdapter([], SENSOR, time_window=5), ValueError,
     "dataset is empty: list has 0 recordings; expected at least one"),
    ("adapter-sensor-size", lambda: TonicAdapter([(_events(), 0)], (4, 4), time_window=5), ValueError,
     r"sensor_size must be a tuple \(W, H, P\) of three positive ints, got \(4, 4\)"),
    ("frames-plain-array", lambda: events_to_frames(np.zeros(3), SENSOR, time_window=1), TypeError,
     r"events must be a NumPy structured array with fields x, t, p .* got ndarray of dtype float64"),
    ("collate-not-pairs", lambda: collate_time_major([(torch.zeros(2, 3),)]), TypeError,
     r"batch item 0 must be a \(frames, label\) pair, got tuple"),
    ("tonic-dataset-name-empty", lambda: tonic_dataset("", "/nowhere", time_window=1000), ValueError,
     "name must be the name of a tonic.datasets class such as 'NMNIST', got ''"),
    ("tonic-dataset-train-str", lambda: tonic_dataset("NMNIST", "/nowhere", train="yes", time_window=1000), TypeError,
     "train must be True or False, got 'yes'"),
    ("to-events-not-a-tensor", lambda: to_events(np.ones(3)), TypeError,
     "to_events: spikes must be a torch.Tensor, got ndarray"),
    ("to-dense-not-events", lambda: to_dense([1, 2]), TypeError, "to_dense: events must be a SpikeEvents"),
    ("sparse-no-chunks", lambda: SparseSpikeDataset.from_chunks(iter([])), ValueError,
     r"no chunks given; need at least one \[T, b, \*features\] tensor"),
    ("sparse-chunk-not-a-tensor", lambda: SparseSpikeDataset.from_chunks([np.ones((2, 2, 2))]), TypeError,
     r"chunk 0 must be a torch.Tensor \[T, b, \*features\], got ndarray"),
    ("sparse-labels-list", lambda: SparseSpikeDataset.from_dense(torch.ones(3, 2, 2), [0, 1]), TypeError,
     r"labels must be a torch.Tensor \[N\], got list"),
    ("sparse-encoder-not-callable", lambda: SparseSpikeDataset.from_encoder(torch.rand(2, 4), "latency"), TypeError,
     "encoder must be callable, got str"),
    ("sparse-encoder-empty-data-set", lambda: SparseSpikeDataset.from_encoder(torch.rand(0, 4), torch.stack), ValueError,
     r"x must have shape \[N, \*features\] with N >= 1, got \(0, 4\)"),
    ("sparse-batches-float", lambda: next(SparseSpikeDataset.from_dense(torch.ones(3, 2, 2)).batches(2.5)), TypeError,
     "batches: batch_size must be an int, got float"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_event_loaders_refuse(call, error, match):
    with pytest.raises(error, match=match):
        call()
