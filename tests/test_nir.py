"""spikeflow.nir: round trips give identical spikes, parts with no NIR form are
named, the dt / resistance conventions hold, and the peers (snnTorch, Norse) agree
when their virtualenv is given (SPIKEFLOW_PEERS_PYTHON)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nir")

import spikeflow as sf  # noqa: E402
from spikeflow import nir as snir  # noqa: E402
from spikeflow.convert.layers import Scale  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _spikes(t=40, b=3, shape=(20,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((t, b) + shape, generator=g) < 0.3).float()


def _mlp(seed=0):
    torch.manual_seed(seed)
    return sf.nn.Sequential(
        torch.nn.Linear(20, 30), sf.nn.LIF(beta=0.8, reset="zero", recurrent=30, threshold=torch.rand(30) + 0.5, shape=(30,)),
        torch.nn.Linear(30, 16), sf.nn.CubaLIF(alpha=0.7, beta=0.9, reset="zero", threshold=0.5, normalize=True, gain=3.0),
        torch.nn.Linear(16, 8, bias=False), sf.nn.IF(reset="zero"), torch.nn.Dropout(0.1),
        torch.nn.Linear(8, 5), sf.nn.LI(beta=0.9, normalize=True),
    ).eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_mlp_identical(seed, tmp_path):
    net = _mlp(seed)
    x = _spikes(seed=seed)
    expected, _ = net(x)
    graph = snir.to_nir(net, (20,))
    nir = pytest.importorskip("nir")
    assert isinstance(graph.nodes["1"], nir.NIRGraph) and isinstance(graph.nodes["1"].nodes["lif"], nir.LIF)
    assert torch.equal(snir.from_nir(graph)(x)[0], expected)
    flat = snir.to_nir(net, (20,), nest_recurrent=False)
    assert ("1", "1.rec") in flat.edges and ("1.rec", "1") in flat.edges
    assert torch.equal(snir.from_nir(flat)(x)[0], expected)
    path = snir.write(tmp_path / "net.nir", graph)
    assert torch.equal(snir.from_nir(path)(x)[0], expected)
    assert expected.abs().sum() > 0


def test_round_trip_conv_identical():
    torch.manual_seed(3)
    net = sf.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), sf.nn.IF(reset="zero", threshold=0.5), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2), sf.nn.LIF(beta=0.7, reset="zero", threshold=0.3), sf.nn.Flatten(),
        torch.nn.Linear(6, 10), Scale(torch.tensor(2.0)), sf.nn.LIF(reset="zero", threshold=0.2),
    )
    x = torch.rand(25, 2, 1, 8, 8)
    expected, _ = net(x)
    back = snir.from_nir(snir.to_nir(net, (1, 8, 8)))
    assert torch.equal(back(x)[0], expected) and expected.sum() > 0


def test_conventions_lif_and_unit_resistance():
    """beta = 1 - dt / tau, r = tau / dt; with unit_resistance the weights carry r."""
    net = sf.nn.Sequential(torch.nn.Linear(4, 3), sf.nn.LIF(beta=0.75, reset="zero"))
    g = snir.to_nir(net, (4,), dt=1e-3)
    lif = g.nodes["1"]
    np.testing.assert_allclose(lif.tau, 1e-3 / 0.25)
    np.testing.assert_allclose(lif.r, 4.0)
    np.testing.assert_allclose(lif.v_threshold, 1.0)
    u = snir.to_nir(net, (4,), dt=1e-3, unit_resistance=True)
    np.testing.assert_allclose(u.nodes["1"].r, 1.0)
    np.testing.assert_allclose(u.nodes["0"].weight, net[0].module.weight.detach().numpy() * 4.0, rtol=1e-6)
    x = _spikes(shape=(4,))
    assert torch.allclose(snir.from_nir(u, dt=1e-3)(x)[0], net(x)[0])


def test_hand_computed_if_import():
    """A NIR IF with r = 2 / dt doubles the input: threshold 1 crossed by 0.6 at step 1."""
    import nir

    g = nir.NIRGraph.from_list(nir.IF(r=np.full(2, 2.0 / 1e-4), v_threshold=np.ones(2)))
    net = snir.from_nir(g)
    x = torch.full((3, 1, 2), 0.3)
    x[:, 0, 1] = 0.6
    out, _ = net(x)  # neuron 0: v = 0.6, 1.2 (spike, reset to 0), 0.6; neuron 1: 1.2 every step
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert out[:, 0, 1].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "layer, words",
    [
        (sf.nn.LIF(), "resets by 'subtract'"),
        (sf.nn.ASN(), "ASN"),
        (sf.nn.GradedLIF(), "GradedLIF"),
        (torch.nn.MaxPool1d(2), "MaxPool1d"),
        (sf.nn.CubaLIF(reset="zero", order="membrane_first"), "membrane_first"),
        (sf.nn.CubaLIF(reset="zero", alpha_rec=0.5, recurrent=20), "alpha_rec"),
    ],
)
def test_no_nir_form_is_named(layer, words):
    net = sf.nn.Sequential(torch.nn.Linear(20, 20), layer)
    with pytest.raises(snir.NIRError, match="layer 1") as info:
        snir.to_nir(net, (20,))
    assert words in str(info.value)


def test_subtract_reset_as_zero_is_explicit():
    net = sf.nn.Sequential(torch.nn.Linear(20, 5), sf.nn.LIF())
    graph = snir.to_nir(net, (20,), subtract_reset="as_zero")
    assert snir.from_nir(graph)[1].reset.value == "zero"


def test_import_errors(tmp_path):
    import nir

    leak = nir.NIRGraph.from_list(nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.ones(2)))
    with pytest.raises(snir.NIRError, match="v_leak"):
        snir.from_nir(leak)
    with pytest.raises(snir.NIRError, match="Delay"):
        snir.from_nir(nir.NIRGraph.from_list(nir.Delay(delay=np.ones(2))))
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(snir.NIRError, match="bad.nir"):
        snir.read(bad)
    with pytest.raises(FileNotFoundError):
        snir.read(tmp_path / "missing.nir")
    with pytest.raises(TypeError):
        snir.from_nir(42)


def _peers_python():
    path = os.environ.get("SPIKEFLOW_PEERS_PYTHON")
    return path if path and Path(path).exists() else None


@pytest.mark.skipif(_peers_python() is None, reason="set SPIKEFLOW_PEERS_PYTHON to a python with snntorch, norse and nir")
def test_peers_agree_spike_for_spike(tmp_path):
    out = tmp_path / "peers.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([_peers_python(), str(ROOT / "benchmarks" / "nir_peers.py"), "--json", str(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    rows = json.loads(out.read_text())
    assert len(rows) >= 15 and all(r["mismatched"] == 0 and r["spikes"] > 0 for r in rows)


def test_cli_export_import_round_trip(tmp_path):
    from click.testing import CliRunner

    from spikeflow.cli import main

    net = _mlp(4)
    model = tmp_path / "net.safetensors"
    sf.save(net, model)
    runner = CliRunner()
    result = runner.invoke(main, ["nir", "export", str(model), "--input-shape", "20", "-o", str(tmp_path / "n.nir")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["nir", "import", str(tmp_path / "n.nir"), "-o", str(tmp_path / "back.safetensors")])
    assert result.exit_code == 0, result.output
    x = _spikes(seed=4)
    assert torch.equal(sf.load(tmp_path / "back.safetensors")(x)[0], net(x)[0])
    sf.save(sf.nn.Sequential(torch.nn.Linear(20, 4), sf.nn.ASN()), tmp_path / "asn.safetensors")
    result = runner.invoke(main, ["nir", "export", str(tmp_path / "asn.safetensors"), "--input-shape", "20",
                                  "-o", str(tmp_path / "a.nir")])
    assert result.exit_code != 0 and "ASN" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["nir", "export", str(model), "--input-shape", "x", "-o", str(tmp_path / "b.nir")])
    assert result.exit_code == 2


def _residual_network(initial=0.0):
    from spikeflow.convert.network import SpikingNetwork, Step

    torch.manual_seed(5)
    layers = {
        "fc1": sf.nn.TimeDistributed(torch.nn.Linear(20, 16)), "n1": sf.nn.IF(reset="zero", threshold=0.6),
        "fc2": sf.nn.TimeDistributed(torch.nn.Linear(16, 16)), "n2": sf.nn.LIF(beta=0.9, reset="zero", threshold=0.5),
        "fc3": sf.nn.TimeDistributed(torch.nn.Linear(16, 4)),
    }
    steps = [
        Step("input", "input", []), Step("fc1", "layer", ["input"]), Step("n1", "layer", ["fc1"], {"initial_membrane": initial}),
        Step("fc2", "layer", ["n1"]), Step("res", "add", ["fc2", "n1"]), Step("n2", "layer", ["res"]),
        Step("fc3", "layer", ["n2"]), Step("output", "output", ["fc3"]),
    ]
    return SpikingNetwork(steps, layers)


def test_branching_network_round_trip():
    """A residual add becomes edges summing into a unit Scale node, and comes back as an add."""
    import nir

    net = _residual_network()
    graph = snir.to_nir(net, (20,))
    assert isinstance(graph.nodes["res"], nir.Scale) and {("fc2", "res"), ("n1", "res")} <= set(graph.edges)
    back = snir.from_nir(graph)
    assert any(s.op == "add" for s in back.steps)
    x = _spikes(seed=5) * 2
    expected, _ = net(x)
    assert torch.equal(back(x)[0], expected) and expected.abs().sum() > 0
    with pytest.raises(snir.NIRError, match="n1"):
        snir.to_nir(_residual_network(initial=0.5), (20,))


def test_per_channel_scale_after_conv():
    """A per-channel Scale (as conversion writes them) exports with the layer's own broadcasting."""
    torch.manual_seed(6)
    net = sf.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding="same"), Scale(torch.tensor([1.0, 2.0, 3.0])),
                           sf.nn.IF(reset="zero"))
    graph = snir.to_nir(net, (1, 6, 6))
    np.testing.assert_array_equal(graph.nodes["1"].scale[:, 0, 0], [1.0, 2.0, 3.0])
    x = torch.rand(10, 2, 1, 6, 6)
    expected, _ = net(x)
    assert torch.equal(snir.from_nir(graph)(x)[0], expected) and expected.sum() > 0
