#!/usr/bin/env python
"""Benchmark one LIF layer: spikeflow (every backend in its registry that runs on the
device) against snnTorch, Norse and SpikingJelly, all measured in one process.

A thin wrapper: the adapters, the check and the timing live in the package,
:mod:`spikeflow.bench.lif_layer` (also run by ``spikeflow bench --only lif_layer``).
Same options and JSON schema (``spikeflow-bench/lif_layer/1``) as before, plus
``--device cpu|cuda``; results go to benchmarks/results/ by default.

    /work/peers-venv/bin/python benchmarks/lif_layer.py            # full benchmark
    /work/peers-venv/bin/python benchmarks/lif_layer.py --quick    # smoke (seconds)

See benchmarks/README.md for the JSON layout and the semantic differences.
"""

from __future__ import annotations

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
try:
    import spikeflow  # noqa: F401
except ImportError:  # run from a checkout without spikeflow installed
    sys.path.insert(0, SRC)

from spikeflow.bench import lif_layer as _impl  # noqa: E402
from spikeflow.bench.lif_layer import *  # noqa: E402,F401,F403  (adapters, check, timing, as before)
from spikeflow.bench.lif_layer import (  # noqa: E402,F401
    SCHEMA,
    Impl,
    build_impls,
    check_correctness,
    make_inputs,
    markdown_table,
    parse_size,
    ratios,
    time_config,
)

DEFAULT_OUT = os.path.join(HERE, "results", "lif_layer.json")
QUICK_OUT = os.path.join(HERE, "results", "lif_layer.quick.json")


def parse_args(argv=None):
    return _impl.parse_args(argv, DEFAULT_OUT, QUICK_OUT, prog=os.path.basename(__file__))


def main(argv=None) -> dict:
    return _impl.main(argv, DEFAULT_OUT, QUICK_OUT, script=__file__)


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        main()
