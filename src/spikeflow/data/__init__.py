"""Datasets as float32 tensors.

- :func:`load_digits`: scikit-learn's 8x8 handwritten digits (1797 samples, ships
  inside scikit-learn: no download), the embedded default of ``spikeflow train``.
- :func:`load_mnist`: MNIST-format folders (MNIST, Fashion-MNIST, KMNIST) on local
  disk, found through ``data_dir`` or ``$SPIKEFLOW_DATA``; with only the t10k files,
  the project's fixed split (train = images 0..7999, test = 8000..9999).
- :func:`read_idx` / :func:`write_idx`: the IDX file format, plain or gzip, checked.
- :func:`make_spike_raster_dataset`: the Randman spike-timing task (seed 003),
  sample-major ``[N, T, units]``; :func:`time_major_batches` gives ``[T, B, units]``.

Optional dependencies (scikit-learn) are imported lazily, when a loader is called.
"""

from .digits import Digits, load_digits
from .idx import IdxError, read_idx, write_idx
from .mnist import Mnist, MnistSplits, SplitPolicy, find_mnist_dir, load_mnist, load_mnist_splits
from .randman import make_spike_raster_dataset, make_spike_times, time_major_batches

__all__ = [
    "Digits",
    "IdxError",
    "Mnist",
    "MnistSplits",
    "SplitPolicy",
    "find_mnist_dir",
    "load_digits",
    "load_mnist",
    "load_mnist_splits",
    "make_spike_raster_dataset",
    "make_spike_times",
    "read_idx",
    "time_major_batches",
    "write_idx",
]
