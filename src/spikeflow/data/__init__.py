"""Datasets as float32 tensors.

- :func:`load_digits`: scikit-learn's 8x8 handwritten digits (1797 samples, ships
  inside scikit-learn: no download), the embedded default of ``spikeflow train``.

Optional dependencies (scikit-learn) are imported lazily, when a loader is called.
"""

from .digits import Digits, load_digits

__all__ = ["Digits", "load_digits"]
