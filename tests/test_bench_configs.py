"""The `spikeflow bench` configurations asn_seed, memory and resnet: quick runs on the
CPU (peers absent in the package's venv: recorded unavailable with a reason), the
seed-000 NumPy transcription against spikeflow's ASN, the exact live-tensor counter,
and the two ResNet-18 builders (when SpikingJelly is importable)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import spikeflow
from spikeflow.bench import asn_seed, memory, resnet
from spikeflow.neurons import ASNParams

try:
    from spikeflow.bench.options import BenchOptions
except ImportError:  # pragma: no cover - the suite's options module not there yet
    BenchOptions = None

HAS_SJ = importlib.util.find_spec("spikingjelly") is not None
MIB = 2**20


def quick_opts(**kw):
    values = dict(device="cpu", threads=0, quick=True, repeats=1, warmup=0, seed=0, impls=None, progress=False)
    values.update(kw)
    if BenchOptions is not None:
        return BenchOptions(**values)
    from types import SimpleNamespace

    return SimpleNamespace(**values)


def check_report(report: dict, name: str) -> None:
    json.dumps(report, allow_nan=False)  # JSON-safe
    assert report["name"] == name
    assert isinstance(report["description"], str) and report["description"]
    assert isinstance(report["results"], list) and report["results"]
    assert all(isinstance(r, dict) for r in report["results"])
    assert isinstance(report["markdown"], str) and report["markdown"].startswith("|")
    # summary rows for the suite (spikeflow.bench.suite.target_row)
    assert isinstance(report["ratios"], list) and report["ratios"]
    for row in report["ratios"]:
        assert {"config", "case", "metric", "value", "op", "target", "met", "what"} <= set(row)
        assert row["config"] == name


def assert_unavailable_with_reason(entries, prefixes):
    """Every entry of a library that is not importable here is 'unavailable' with a reason."""
    for name, entry in entries.items():
        lib = next((p for p in prefixes if name.startswith(p)), None)
        if lib is None or importlib.util.find_spec(lib) is not None:
            continue
        assert entry["status"] == "unavailable", (name, entry)
        assert "not importable" in entry["reason"]


# ----------------------------------------------------------------------------- asn_seed


@pytest.mark.parametrize("mode", asn_seed.MODES)
def test_seed_numpy_loop_matches_spikeflow_asn(mode):
    x = asn_seed.make_input(mode, 8, 300, seed=3)
    expected = asn_seed.seed_loop(x, mode)  # [N, T, 1]
    assert expected.sum() > 20
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
    for backend in ("reference", "auto"):
        out = spikeflow.scan(ASNParams(input=mode), xt, backend=backend).output
        np.testing.assert_array_equal(out.numpy().transpose(1, 0, 2), expected)


def test_seed_class_keeps_the_seed_typo_harmlessly():
    neuron = asn_seed.SeedASN(mf=0.1, bias=0.05)
    assert neuron.S_bias == (0.05,)  # the seed's tuple
    neuron.update(np.array([0.3]), spike_train=True)
    assert neuron.S.shape == (1,) and abs(neuron.S[0] - (0.05 + (1 - neuron.dPhi) * 0.3)) < 1e-15


def test_asn_seed_quick_run():
    report = asn_seed.run(quick_opts())
    check_report(report, "asn_seed")
    assert report["checks_passed"] is True
    for row in report["results"]:
        assert {"mode", "N", "T", "implementations", "ratios", "check"} <= set(row)
        np_row = row["implementations"][asn_seed.IMPL_NUMPY]
        assert np_row["status"] == "ok" and 1 <= np_row["measured_neurons"] <= row["N"]
        assert np_row["median_ms"] == pytest.approx(np_row["measured_median_ms"] * row["N"] / np_row["measured_neurons"])
        for name in (asn_seed.IMPL_REF, asn_seed.IMPL_FUSED):
            assert row["check"][name]["mismatched_spikes"] == 0
            assert row["ratios"]["numpy_ms_over_reference_ms"] > 0
    assert set(report["ratio_details"]["numpy_ms_over_fused_ms"]) == set(asn_seed.MODES)
    assert report["implementations"][asn_seed.IMPL_FUSED]["backend_resolved"] == "cpu"


# ----------------------------------------------------------------------------- memory


def test_live_tensor_bytes_counts_exactly():
    n = MIB // 4  # float32: 1 MiB
    with memory.LiveTensorBytes() as m:
        a = torch.empty(n)
        b = torch.empty(n)
        c = torch.empty(n)
        del b
        d = torch.empty(n)
        view = a.view(-1)[10:]  # a view: no new storage
        a.add_(1)  # in place: no new storage
        assert m.current == 3 * MIB
    assert m.peak == 3 * MIB
    assert m.allocations == 4 and m.frees == 1
    del a, view, c, d
    assert m.current == 0


def test_live_tensor_bytes_ignores_preexisting_and_counts_backward():
    x = torch.randn(1024, requires_grad=True)  # 4 KiB, allocated before
    w = torch.randn(1024)
    with memory.LiveTensorBytes() as m:
        y = x * w  # 4 KiB (w saved for backward: no copy)
        y.sum().backward()  # grad of sum (expanded scalar), x.grad (4 KiB)
        del y
    assert x.grad is not None
    assert m.current == 4096  # x.grad remains
    assert 8192 <= m.peak <= 8192 + 64


def test_memory_quick_run():
    report = memory.run(quick_opts(impls=("spikeflow-cpu", "snntorch", "norse", "spikingjelly")))
    check_report(report, "memory")
    rows = {r["implementation"]: r for r in report["results"]}
    sf = rows["spikeflow-cpu"]
    assert sf["status"] == "ok", sf
    T, B, N = memory.QUICK_SIZE
    size = T * B * N * 4
    # spikes + x.grad at least; checkpoints and states on top, far below a per-step graph
    assert 2 * size <= sf["peak_bytes"] <= 3 * size
    assert sf["tracked"]["live_bytes_at_exit"] == size  # x.grad
    assert sf["rss_peak_delta_bytes"] is None or sf["rss_peak_delta_bytes"] >= 0
    assert_unavailable_with_reason(
        {r["implementation"]: r for r in report["results"]}, ("snntorch", "norse", "spikingjelly")
    )
    assert "checkpoint" in report["notes"][0]


# ----------------------------------------------------------------------------- resnet


def test_spikeflow_resnet18_structure():
    net = resnet.spikeflow_resnet18("reference")
    assert resnet.layer_counts(net) == {"conv2d": 20, "batchnorm2d": 20, "linear": 1, "lif": 17}
    assert resnet.count_parameters(net) == 11_173_962  # CIFAR ResNet-18, 10 classes
    out = net(torch.randn(2, 1, 3, 32, 32))
    assert out.shape == (2, 1, 10)


@pytest.mark.skipif(not HAS_SJ, reason="SpikingJelly is not installed in this environment")
def test_resnet_builders_equal_and_same_function():
    sj = resnet.spikingjelly_resnet18()
    sf = resnet.spikeflow_resnet18("auto")
    assert resnet.count_parameters(sj) == resnet.count_parameters(sf)
    assert resnet.layer_counts(sj) == resnet.layer_counts(sf)
    resnet.copy_weights(sj, sf)
    from spikingjelly.activation_based import functional

    x = torch.randn(2, 2, 3, 32, 32)
    functional.reset_net(sj)
    torch.testing.assert_close(sf(x), sj(x))


def test_resnet_quick_run():
    report = resnet.run(quick_opts(impls=("spikeflow-cpu", "spikingjelly")))
    check_report(report, "resnet18")
    row = report["results"][0]
    e = row["implementations"]["spikeflow-cpu"]
    assert e["status"] == "ok" and e["median_ms"] > 0 and e["images_per_s"] > 0
    assert report["implementations"]["spikeflow-reference"]["status"] == "skipped"
    if HAS_SJ:
        assert report["structure"]["equal"] is True
        assert report["implementations"]["spikeflow-cpu"]["check"]["passed"] is True
    else:
        sj = report["implementations"]["spikingjelly"]
        assert sj["status"] == "unavailable" and "not importable" in sj["reason"]
