#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (about 8 minutes on an H100):
# the triton backend against the reference on the GPU, then `spikeflow bench --device cuda`.
#
# Usage, from the repository root:  bash benchmarks/gpu_session.sh [OUT_DIR]
# Results: OUT_DIR/{nvidia-smi.txt, tests.log, bench_cuda.json, bench_cuda.md, bench.log}
# (OUT_DIR defaults to $OUT, else /tmp/spikeflow-gpu). Copy bench_cuda.json and .md into
# benchmarks/results/ afterwards.
#
# Peers: a machine that cannot reach PyPI takes them as wheels in .whl/ (git-ignored),
# downloaded beforehand where pip works (norse has no wheel for every Python; it is then
# recorded as unavailable):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     --platform any -d .whl snntorch==1.0.0 spikingjelly==2.0.0 nir nirtorch
# Each stage has its own time limit, so a hang in one still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/spikeflow-gpu}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/spikeflow-site .whl/*.whl && export PYTHONPATH=/tmp/spikeflow-site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SPIKEFLOW_CACHE_DIR="${SPIKEFLOW_CACHE_DIR:-/tmp/spikeflow-kernels}"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
    | tee -a "$out/nvidia-smi.txt"

# 1. Correctness on the GPU: the triton backend's own cases and the shared suite's LIF grid.
timeout 200 python3 -m pytest -q -x -p no:cacheprovider -o addopts="" \
    tests/test_triton_backend.py "tests/test_equivalence.py::test_lif_grid" \
    "tests/test_equivalence.py::test_gradcheck" 2>&1 | tee "$out/tests.log"

# 2. The benchmark suite on the GPU (every configuration; peers that are missing are
#    recorded as unavailable).
timeout 330 python3 -m spikeflow.bench --device cuda --out "$out/bench_cuda.json" 2>&1 \
    | tee "$out/bench.log"
ls -la "$out"
