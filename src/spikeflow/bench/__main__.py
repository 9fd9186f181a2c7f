"""``python -m spikeflow.bench``: run the benchmark suite without the click CLI."""

import warnings

from .suite import main

if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        main()
