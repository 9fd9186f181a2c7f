"""The fused CPU backend: capabilities, errors, the build at first use and its cache.

Numerical agreement with the reference is tested for every backend in
``test_equivalence.py``; this file tests what is specific to ``backend="cpu"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from types import SimpleNamespace

import pytest
import torch

import spikeflow
from spikeflow import surrogate as sg
from spikeflow.neurons import ASNParams, CubaLIFParams, CubaLIFState, GradedLIFParams, LIFParams, LIParams
from spikeflow.backends import _registry, cpu

ALL_PARAMS = {
    "lif": LIFParams(surrogate=sg.atan()),
    "cuba_lif": CubaLIFParams(gain=3.0, normalize=True),
    "asn": ASNParams(),
    "graded_lif": GradedLIFParams(),
    "li": LIParams(normalize=True),
}


def _x(dtype=torch.float32, shape=(6, 3, 5)) -> torch.Tensor:
    return (torch.randn(shape, dtype=torch.float64) + 0.4).to(dtype)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Forget the loaded kernel library and point the cache to an empty directory;
    everything (environment, the loaded library, warn-once memory) is restored after.

    ``fresh.dir`` is a scratch directory, ``fresh.cache`` the new cache and
    ``fresh.built`` the library this session had loaded (None if it had none)."""
    built = cpu.library_path()
    monkeypatch.setattr(cpu, "_loaded", None)
    monkeypatch.setattr(_registry, "_warned", set())
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(tmp_path / "kernels"))
    return SimpleNamespace(dir=tmp_path, cache=tmp_path / "kernels", built=built)


def _script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


# ---------------------------------------------------------------------------
# Availability and bitwise agreement


def test_builds_with_the_compiler_of_this_machine():
    """Where a C++ compiler exists the backend must be available (no silent skip)."""
    compiler = (os.environ.get("CXX") or "g++").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler {compiler!r} on this machine")
    assert cpu.available() is None
    assert cpu.library_path() is not None and cpu.library_path().exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("neuron", sorted(ALL_PARAMS))
def test_bitwise_identical_to_the_reference(neuron, dtype):
    """Outputs, final states and trajectories are bit for bit the reference's."""
    params = ALL_PARAMS[neuron]
    x = _x(dtype, (40, 4, 70))  # 280 elements: two kernel blocks
    with torch.no_grad():
        ref = spikeflow.scan(params, x, backend="reference", record=True)
        got = spikeflow.scan(params, x, backend="cpu", record=True)
    assert torch.equal(got.output, ref.output)
    for a, b in zip(got.state, ref.state):
        assert torch.equal(a, b)
    for a, b in zip(got.trajectory, ref.trajectory):
        assert torch.equal(a, b)


def test_auto_prefers_cpu_for_cpu_tensors():
    x = _x()
    model = spikeflow.neurons.model_of(ALL_PARAMS["lif"])
    assert _registry.resolve(model, "auto", ALL_PARAMS["lif"], x, False).name == "cpu"
    assert _registry.resolve(model, "auto", ALL_PARAMS["lif"], x.half(), False).name == "reference"
    assert _registry.resolve(model, "auto", ALL_PARAMS["lif"], x, True).name == "cpu"  # recurrent


def test_thread_count_does_not_change_results():
    params = LIFParams(beta=torch.full((300,), 0.9, requires_grad=True), surrogate=sg.sigmoid())
    x0 = _x(torch.float32, (30, 5, 300))
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            x = x0.clone().requires_grad_(True)
            out = spikeflow.scan(params, x, backend="cpu").output
            gx, gb = torch.autograd.grad((out * torch.linspace(-1, 1, 300)).sum(), [x, params.beta])
            results.append((out, gx, gb))
    finally:
        torch.set_num_threads(threads)
    for out, gx, gb in results[1:]:
        assert torch.equal(out, results[0][0])
        assert torch.equal(gx, results[0][1])
        assert torch.equal(gb, results[0][2])


def test_empty_batch():
    x = torch.zeros(4, 0, 3)
    result = spikeflow.scan(LIFParams(), x, backend="cpu", record=True)
    assert result.output.shape == (4, 0, 3) and result.trajectory.v.shape == (4, 0, 3)


def test_cuba_recurrent_current_passes_through():
    """Without alpha_rec, the i_rec field is carried unchanged (and gets its gradient)."""
    x = _x(torch.float64)
    i_rec = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(3, 5, dtype=torch.float64)
    state = CubaLIFState(zeros, zeros.clone(), i_rec)
    result = spikeflow.scan(ALL_PARAMS["cuba_lif"], x, state, backend="cpu", record=True)
    assert torch.equal(result.state.i_rec, i_rec)
    assert torch.equal(result.trajectory.i_rec, i_rec.detach().expand(6, 3, 5))
    (grad,) = torch.autograd.grad(result.trajectory.i_rec.sum() + result.state.i_rec.sum(), [i_rec])
    assert torch.equal(grad, torch.full_like(grad, 7.0))


def test_backward_keeps_checkpoints_not_every_state():
    """Without record, the forward keeps for the backward only the state before every
    K-th step; with record, the trajectory it returns (no second copy)."""
    params = ASNParams()  # four state fields, scalar parameters
    x = torch.rand(200, 2, 64, dtype=torch.float64, requires_grad=True)
    out = spikeflow.scan(params, x, backend="cpu").output
    interval = cpu._checkpoint_interval(4, 8)
    rows = -(-200 // interval)
    assert rows < 200
    saved = out.grad_fn.saved_tensors
    assert sum(t.numel() for t in saved) == x.numel() + 4 * 128 + 4 * rows * 128 + 8

    result = spikeflow.scan(params, x, backend="cpu", record=True)
    kept = {t.data_ptr() for t in result.output.grad_fn.saved_tensors}
    assert all(field.data_ptr() in kept for field in result.trajectory)


# ---------------------------------------------------------------------------
# Explicit requests it cannot serve raise, naming the reason and the alternatives


def _raises(match: str, *args, **kwargs) -> str:
    with pytest.raises(ValueError, match=match) as info:
        spikeflow.scan(*args, backend="cpu", **kwargs)
    message = str(info.value)
    assert "Backends that can:" in message
    return message


def test_unsupported_dtype_raises():
    # scan computes half inputs in float32, so only a direct registry call sees float16
    model = spikeflow.neurons.model_of(LIFParams())
    with pytest.raises(ValueError, match="dtype float16 is not supported") as info:
        _registry.resolve(model, "cpu", LIFParams(), _x(torch.float16), False)
    assert "reference" in str(info.value) and "float32" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_run_the_kernel_in_float32(dtype):
    x = _x(dtype)
    got = spikeflow.scan(LIFParams(), x, backend="cpu", record=True)
    ref = spikeflow.scan(LIFParams(), x.float(), backend="reference", record=True)
    assert got.output.dtype == dtype and got.state.v.dtype == torch.float32
    assert torch.equal(got.output.float(), ref.output)
    assert torch.equal(got.state.v, ref.state.v)


def test_recurrent_layers_run_the_kernel_step_by_step():
    """The recurrent drive is computed between kernel steps (tests/test_equivalence.py
    compares gradients); a recurrent state carries over between calls."""
    x = _x(shape=(12, 3, 5))
    weight = torch.randn(x.shape[-1], x.shape[-1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = spikeflow.scan(LIFParams(), x, backend="reference", recurrent_weight=weight)
        first = spikeflow.scan(LIFParams(), x[:7], backend="cpu", recurrent_weight=weight)
        rest = spikeflow.scan(LIFParams(), x[7:], first.state, backend="cpu", recurrent_weight=weight)
    assert torch.equal(torch.cat([first.output, rest.output]), ref.output)
    assert torch.equal(rest.state.output, ref.state.output)
    assert torch.equal(rest.state.neuron.v, ref.state.neuron.v)


def test_alpha_rec_raises():
    message = _raises("alpha_rec", CubaLIFParams(alpha_rec=0.8), _x())
    assert "reference" in message


def test_other_device_raises():
    _raises("device 'meta' is not supported", LIFParams(), torch.empty(4, 2, 3, device="meta"))


# ---------------------------------------------------------------------------
# Build failures: a clear error for backend="cpu", a warning and the reference for "auto"


def test_missing_compiler(fresh, monkeypatch):
    monkeypatch.setenv("CXX", str(fresh.dir / "no-such-compiler"))
    reason = cpu.available()
    assert reason is not None and "cannot run the C++ compiler" in reason and "no-such-compiler" in reason


def test_broken_compiler_raises_for_cpu_and_auto_falls_back(fresh, monkeypatch):
    monkeypatch.setenv("CXX", "/bin/false")
    params, x = LIFParams(), _x()
    reason = cpu.available()
    assert reason is not None and "/bin/false" in reason
    with pytest.raises(ValueError, match="backend 'cpu' cannot run") as info:
        spikeflow.scan(params, x, backend="cpu")
    assert "/bin/false" in str(info.value) and "reference" in str(info.value)
    expected = spikeflow.scan(params, x, backend="reference")
    with pytest.warns(RuntimeWarning, match="'cpu'"):
        result = spikeflow.scan(params, x)
    assert torch.equal(result.output, expected.output)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        spikeflow.scan(params, x)


def test_compiler_errors_are_kept(fresh, monkeypatch):
    compiler = _script(fresh.dir / "cxx", """\
        if [ "$1" = "--version" ]; then echo "fake-cxx 1.0"; exit 0; fi
        cat > /dev/null
        echo "scan.cpp:1:1: error: the kernel does not compile here" >&2
        exit 1
        """)
    monkeypatch.setenv("CXX", compiler)
    reason = cpu.available()
    assert "failed to build" in reason and "the kernel does not compile here" in reason
    logs = list(fresh.cache.glob("*.log"))
    assert len(logs) == 1 and "does not compile here" in logs[0].read_text()
    assert not list(fresh.cache.glob("*.so*")), "no partial library is left behind"


# ---------------------------------------------------------------------------
# The cache


def test_cache_is_reused(fresh, monkeypatch):
    """A second load finds the library in the cache and does not compile again.

    The compiler is a wrapper that logs its calls and hands out the library built
    for this session (the cache key includes its version string, so the name is new).
    """
    if fresh.built is None:
        pytest.skip(f"the cpu backend is unavailable here: {cpu.available()}")
    built = fresh.built
    log = fresh.dir / "calls.log"
    compiler = _script(fresh.dir / "cxx", f"""\
        if [ "$1" = "--version" ]; then echo "logging-cxx 1.0"; exit 0; fi
        echo "$@" >> {log}
        cat > /dev/null
        while [ $# -gt 0 ]; do
          if [ "$1" = "-o" ]; then cp {built} "$2"; exit 0; fi
          shift
        done
        exit 1
        """)
    monkeypatch.setenv("CXX", compiler)

    first = cpu._load()
    assert first.error is None and first.compiled
    assert first.path.parent == fresh.cache and first.path != built
    calls = log.read_text().splitlines()
    assert len(calls) == 1
    for flag in ("-O3", "-ffp-contract=off", "-fopenmp"):
        assert flag in calls[0].split()
    assert "-ffast-math" not in calls[0]
    left = sorted(p.name for p in first.path.parent.iterdir())
    assert left == [first.path.name], "no temporary files left"

    monkeypatch.setattr(cpu, "_loaded", None)
    second = cpu._load()
    assert second.error is None and not second.compiled and second.path == first.path
    assert len(log.read_text().splitlines()) == 1, "the second load compiled again"
    x = _x()
    assert torch.equal(spikeflow.scan(LIFParams(), x, backend="cpu").output,
                       spikeflow.scan(LIFParams(), x, backend="reference").output)


def test_another_process_reuses_the_cache():
    """A new process with the same cache directory loads the built library as is."""
    if cpu.available() is not None:
        pytest.skip(f"the cpu backend is unavailable here: {cpu.available()}")
    code = "from spikeflow.backends import cpu; l = cpu._load(); print(l.error, l.compiled, l.path)"
    env = dict(os.environ, SPIKEFLOW_CACHE_DIR=str(cpu.library_path().parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "False", str(cpu.library_path())]


def test_auto_does_not_build_the_kernel_for_calls_it_cannot_run(tmp_path):
    """A call the kernels do not implement (a separate recurrent current, alpha_rec)
    goes to the reference under "auto" without compiling anything."""
    code = (
        "import torch, spikeflow; from spikeflow.neurons import CubaLIFParams; "
        "spikeflow.scan(CubaLIFParams(alpha_rec=0.8), torch.rand(3, 2, 4), "
        "recurrent_weight=torch.zeros(4, 4)); "
        "from spikeflow.backends import cpu; print(cpu._loaded is None)"
    )
    env = dict(os.environ, SPIKEFLOW_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert not any((tmp_path / "cache").rglob("*.so")) if (tmp_path / "cache").exists() else True
