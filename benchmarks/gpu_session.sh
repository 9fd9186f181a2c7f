#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (about 8 minutes on an H100):
# the triton backend against the reference on the GPU, then `spikeflow bench --device cuda`.
#
# Usage, from the repository root:  bash benchmarks/gpu_session.sh [OUT_DIR]
# Results: OUT_DIR/{nvidia-smi.txt, tests.log, bench_cuda.{json,md}, bench_cuda_asn.{json,md}, bench.log}
# (OUT_DIR defaults to $OUT, else /tmp/spikeflow-gpu): at most 8 files, what a device call
# brings back. Copy the bench_cuda* files into
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

# 1. Correctness on the GPU: the triton backend's own cases (every neuron, setting and
#    surrogate; each variant compiles once) and the shared suite's gradcheck.
timeout 150 python3 -m pytest -q -x -p no:cacheprovider -o addopts="" \
    tests/test_triton_backend.py "tests/test_equivalence.py::test_gradcheck" 2>&1 | tee "$out/tests.log"

# 2. The benchmark suite on the GPU, the GPU targets first (the report is rewritten after
#    every configuration, so a stage cut by its time limit keeps what it measured), then
#    seed 000's ASN comparison (its NumPy loop runs on the CPU) into a file of its own.
timeout 300 python3 -m spikeflow.bench --device cuda --repeats 5 --out "$out/bench_cuda.json" \
    --only lif_layer --only open_neuromorphic --only memory --only resnet18 --only mlp 2>&1 \
    | tee "$out/bench.log"
timeout 90 python3 -m spikeflow.bench --device cuda --repeats 3 --warmup 1 --only asn_seed \
    --out "$out/bench_cuda_asn.json" 2>&1 | tee -a "$out/bench.log"
ls -la "$out"
