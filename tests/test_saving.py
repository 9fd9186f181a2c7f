"""spikeflow.save / spikeflow.load: whole models as one safetensors file, no pickle."""

from __future__ import annotations

import dataclasses
import json
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import spikeflow
from spikeflow import nn as snn
from spikeflow import saving
from spikeflow import surrogate as sg
from spikeflow.convert import SpikingNetwork, convert
from spikeflow.convert.asn import asn_model
from spikeflow.convert.network import build_layer, layer_config
from spikeflow.hardware import CrossbarConfig, CrossbarConv2d, CrossbarLinear, program, to_crossbar
from spikeflow.train import TrainConfig, build_model
from spikeflow.train.checkpoint import CheckpointError


# -- models --------------------------------------------------------------------------------
def _every_neuron() -> torch.nn.Module:
    """Every spikeflow neuron, each with non-default settings and learnable values."""
    torch.manual_seed(0)
    return snn.Sequential(
        snn.Linear(6, 5),
        snn.LIF(0.8, threshold=torch.rand(5) + 0.5, shape=(5,), learn_beta=True, reset="zero", detach_reset=True,
                surrogate=sg.atan(3.0), dt=0.5, backend="reference"),
        snn.Linear(5, 5, bias=False),
        snn.CubaLIF(0.7, 0.85, threshold=0.8, gain=2.5, normalize=True, order="membrane_first", reset="none",
                    surrogate=sg.straight_through(), learn_alpha=True, learn_threshold=True, shape=(5,)),
        snn.IF(0.9, shape=(5,), learn_threshold=True, surrogate=sg.triangle(0.5), reset="subtract"),
        snn.GradedLIF(0.85, threshold=1.5, penalty=1.0, learn_beta=True, shape=(5,)),
        snn.ASN(tau_phi=3.0, tau_gamma=12.0, tau_eta=40.0, m_f=0.2, h=0.5, bias=0.1, input="current",
                surrogate=sg.sigmoid(4.0)),
        snn.Linear(5, 3),
        snn.LI(tau=8.0, dt=2.0, normalize=True, learn_beta=True, shape=(3,)),
    )


def _recurrent() -> torch.nn.Module:
    """Seed 003's recurrent current-based layers, with learnable per-neuron values."""
    torch.manual_seed(1)
    net = snn.Sequential(
        snn.Linear(4, 6, bias=False),
        snn.CubaLIF(alpha=0.9, beta=0.95, alpha_rec=0.85, gain=20.0, normalize=True, order="membrane_first",
                    reset="zero", detach_reset=True, recurrent=6, learn_beta=True, shape=(6,)),
        snn.Linear(6, 3, bias=False),
        snn.LIF(tau=5.0, recurrent=3, learn_threshold=True),
    )
    with torch.no_grad():  # strong enough drive that the output layer spikes
        net[0].module.weight.mul_(4.0)
        net[2].module.weight.mul_(8.0)
    return net


def _conv() -> torch.nn.Module:
    torch.manual_seed(2)
    net = snn.Sequential(
        snn.Conv2d(1, 3, 3, padding=1),
        snn.BatchNorm2d(3),
        snn.LIF(0.9, threshold=torch.rand(3, 1, 1) + 0.5, shape=(3, 1, 1)),
        snn.MaxPool2d(2),
        snn.Conv2d(3, 4, 3, stride=1, padding="same", bias=False),
        snn.AvgPool2d(2),
        snn.Flatten(),
        snn.Dropout(0.3),
        snn.TimeDistributed(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Identity())),
        snn.TimeDistributed(torch.nn.LayerNorm(8)),
        snn.IF(),
        snn.Linear(8, 4),
        snn.LI(0.8),
    )
    bn = net[1].module
    bn.running_mean.copy_(torch.rand(3) - 0.5)
    bn.running_var.copy_(torch.rand(3) + 0.5)
    bn.num_batches_tracked.fill_(7)
    return net


def _nested() -> torch.nn.Module:
    torch.manual_seed(3)
    inner = snn.Sequential(snn.Linear(6, 5), snn.LIF(0.7))
    return snn.Sequential(
        inner,
        snn.Sequential(snn.Sequential(snn.Linear(5, 4), snn.CubaLIF()), snn.Linear(4, 3)),
        snn.LI(),
    )


def _crossbar() -> torch.nn.Module:
    torch.manual_seed(4)
    config = CrossbarConfig(levels=16, program_noise=0.02, read_noise=0.01, stuck_off=0.01, dac_bits=8, adc_bits=8,
                            drift_nu=0.01, drift_time=100.0, seed=5)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    return snn.Sequential(
        snn.TimeDistributed(CrossbarConv2d.from_conv(conv, config, device_index=1)),
        snn.LIF(0.9),
        snn.Flatten(),
        snn.TimeDistributed(CrossbarLinear.from_linear(torch.nn.Linear(2 * 36, 3), config.replace(seed=9),
                                                       hardware_aware=True, device_index=2)),
        snn.LI(),
    )


def _preset(name: str) -> torch.nn.Module:
    torch.manual_seed(5)
    model = build_model(TrainConfig(preset=name, hidden=4))
    if name == "seed003":
        with torch.no_grad():  # so that the output layer spikes on a short input
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.mul_(10.0)
    return model


def _ann() -> torch.nn.Module:
    torch.manual_seed(6)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3),
    ).eval()


def _converted(coding: str, **options) -> torch.nn.Module:
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(7))
    return convert(_ann(), x, coding=coding, **options)


def _converted_ttfs() -> torch.nn.Module:
    net = _converted("ttfs-dynamic", window=4)
    for _, neuron in net.neurons():
        neuron.backend = "reference"  # a registered layer's backend is kept too
    return net


def _converted_asn() -> torch.nn.Module:
    torch.manual_seed(8)
    model = asn_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 6), torch.nn.ReLU(),
                                          torch.nn.Linear(6, 3)), h=1.0).eval()
    return convert(model, coding="asn")


IMAGE = (1, 6, 6)
MODELS = {  # name: (build, input features after [T, B])
    "every-neuron": (_every_neuron, (6,)),
    "recurrent": (_recurrent, (4,)),
    "conv": (_conv, (1, 8, 8)),
    "nested": (_nested, (6,)),
    "crossbar": (_crossbar, IMAGE),
    "preset-mnist-cnn": (lambda: _preset("mnist-cnn"), (1, 28, 28)),
    "preset-seed001": (lambda: _preset("seed001"), (784,)),
    "preset-seed003": (lambda: _preset("seed003"), (16,)),
    "converted-rate": (lambda: _converted("rate", fold_scales=False), IMAGE),
    "converted-ttfs-dynamic": (_converted_ttfs, IMAGE),
    "converted-asn": (_converted_asn, IMAGE),
}


def _input(features: tuple, steps: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return (torch.rand(steps, 3, *features, generator=g) * 1.5).round()  # spikes 0/1 and some 2s


def _assert_same(a, b, where: str = "output") -> None:
    """Bit-identical tensors, recursively through states (tuples, lists, dicts)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _run(model: torch.nn.Module, x: torch.Tensor):
    if any(isinstance(m, (CrossbarLinear, CrossbarConv2d)) for m in model.modules()):
        program(model)  # the device reads restart from the programming seed
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_is_exact(name, tmp_path):
    build, features = MODELS[name]
    model = build().eval()
    path = spikeflow.save(model, tmp_path / "model.safetensors", metadata={"name": name, "epoch": 3})
    assert path == tmp_path / "model.safetensors"
    loaded = spikeflow.load(path)

    assert type(loaded) is type(model) and not loaded.training
    assert not any(m.training for m in loaded.modules())
    assert repr(loaded) == repr(model)
    assert saving.module_spec(loaded) == saving.module_spec(model)
    before, after = model.state_dict(), loaded.state_dict()
    assert list(after) == list(before)
    for key in before:
        assert after[key].dtype == before[key].dtype and torch.equal(after[key], before[key]), key
    assert [n for n, p in loaded.named_parameters()] == [n for n, p in model.named_parameters()]
    x = _input(features)
    out = _run(loaded, x)
    _assert_same(out, _run(model, x))
    assert out[0].abs().sum() > 0  # the comparison is not of two silent networks
    assert saving.load_metadata(path) == {"name": name, "epoch": 3}


def test_neuron_settings_survive_one_by_one(tmp_path):
    model = _every_neuron()
    loaded = spikeflow.load(spikeflow.save(model, tmp_path / "n.safetensors"))
    for a, b in zip(model, loaded):
        if isinstance(a, snn.Neuron):
            assert type(a) is type(b) and a.backend == b.backend
            assert a._config.__class__ is b._config.__class__
            static = [f.name for f in dataclasses.fields(a._config) if f.name not in a._VALUES]
            for field in static:  # every static setting, surrogate kind and alpha included
                assert getattr(a._config, field) == getattr(b._config, field), (type(a).__name__, field)
            assert getattr(a, "dt", None) == getattr(b, "dt", None)
            assert sorted(n for n, _ in a.named_parameters()) == sorted(n for n, _ in b.named_parameters())
            assert sorted(n for n, _ in a.named_buffers()) == sorted(n for n, _ in b.named_buffers())
    lif, cuba = loaded[1], loaded[3]
    assert lif.surrogate == sg.atan(3.0) and lif.backend == "reference" and lif.dt == 0.5
    assert "beta_logit" in dict(lif.named_parameters()) and "threshold_value" in dict(lif.named_buffers())
    assert cuba.surrogate == sg.straight_through() and cuba.order.value == "membrane_first" and cuba.gain == 2.5
    rec = spikeflow.load(spikeflow.save(_recurrent(), tmp_path / "r.safetensors"))
    assert rec[1].recurrent_weight.shape == (6, 6) and rec[1].alpha_rec == 0.85


def test_gradients_flow_through_the_loaded_model(tmp_path):
    model = _every_neuron()
    loaded = spikeflow.load(spikeflow.save(model, tmp_path / "g.safetensors")).train()
    out, _ = loaded(_input((6,)))
    out.sum().backward()
    assert loaded[8].beta_logit.grad is not None and loaded[0].module.weight.grad is not None


def test_dtype_frozen_parameters_and_tied_weights_are_kept(tmp_path):
    torch.manual_seed(9)
    model = snn.Sequential(snn.Linear(4, 4), snn.LIF(learn_beta=True), snn.Linear(4, 4), snn.LI()).double()
    model[2].module.weight = model[0].module.weight  # tied
    model[0].module.bias.requires_grad_(False)
    path = spikeflow.save(model, tmp_path / "t.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        aliases = json.loads(f.metadata()["aliases"])
    assert aliases == {"layers.2.module.weight": "layers.0.module.weight"}
    assert "layers.2.module.weight" not in keys
    loaded = spikeflow.load(path)
    assert loaded[1].beta_logit.dtype == torch.float64 and loaded[0].module.weight.dtype == torch.float64
    assert loaded[2].module.weight.data_ptr() == loaded[0].module.weight.data_ptr()
    assert not loaded[0].module.bias.requires_grad and loaded[0].module.weight.requires_grad
    x = _input((4,)).double()
    _assert_same(_run(loaded, x), _run(model.eval(), x))


def test_the_file_is_plain_safetensors_without_pickle(tmp_path):
    model = _conv()
    path = spikeflow.save(model, tmp_path / "c.safetensors", metadata={"note": "hi"})
    data = path.read_bytes()
    assert not data.startswith((b"PK\x03\x04", b"\x80"))  # neither a torch.save zip nor a pickle
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    assert data[8:9] == b"{"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(model.state_dict())
    assert header["__metadata__"] == meta
    assert meta["format"] == "spikeflow.model/1" and meta["spikeflow_version"] == spikeflow.__version__
    assert json.loads(meta["architecture"]) == saving.module_spec(model)
    assert json.loads(meta["user"]) == {"note": "hi"}
    assert not list(tmp_path.glob("*.tmp"))


def test_crossbar_settings_survive(tmp_path):
    model = _crossbar()
    model[3].module.ideal = True  # computes as the plain layer until switched back
    loaded = spikeflow.load(spikeflow.save(model, tmp_path / "x.safetensors"))
    for a, b in ((model[0].module, loaded[0].module), (model[3].module, loaded[3].module)):
        assert type(a) is type(b) and a.config == b.config
        assert (a.hardware_aware, a.device_index, a.ideal) == (b.hardware_aware, b.device_index, b.ideal)
    assert loaded[3].module.ideal and loaded[3].module.config.seed == 9 and loaded[0].module.device_index == 1
    x = _input(IMAGE)
    _assert_same(_run(loaded, x), _run(model.eval(), x))


def test_spiking_network_files_keep_the_ideal_layer_and_full_files_keep_the_crossbar(tmp_path):
    net = _converted("rate")
    to_crossbar(net, CrossbarConfig(levels=8, seed=3))
    crossbars = [n for n, m in net.named_modules() if isinstance(m, CrossbarLinear)]
    assert crossbars
    loaded = spikeflow.load(spikeflow.save(net, tmp_path / "full.safetensors"))
    assert [n for n, m in loaded.named_modules() if isinstance(m, CrossbarLinear)] == crossbars
    # SpikingNetwork.save (its own format) still writes the ideal layers
    spec = net.spec()
    assert all(c.get("type") not in ("CrossbarLinear", "CrossbarConv2d") for c in spec["layers"].values())
    plain = SpikingNetwork.load(net.save(tmp_path / "snn.pt"))
    assert not any(isinstance(m, CrossbarLinear) for m in plain.modules())


def test_older_spiking_network_layer_descriptions_still_build():
    lif = build_layer({"type": "LIF", "shape": [3], "reset": "zero", "beta_shape": []})
    assert lif.threshold.shape == (3,) and lif.beta.shape == () and lif.reset.value == "zero"
    neuron = build_layer({"type": "IF", "shape": [2, 1, 1], "reset": "subtract"})
    assert neuron.threshold.shape == (2, 1, 1) and neuron.beta.shape == (2, 1, 1)
    li = build_layer({"type": "LI", "shape": [4], "normalize": True})
    assert li.beta.shape == (4,) and li.normalize
    asn = build_layer({"type": "ASN", "tau_phi": 2.0, "tau_gamma": 15.0, "tau_eta": 50.0, "tau_beta": 50.0,
                       "m_f": 0.1, "theta0": 0.1, "h": 1.0, "bias": 0.0, "input": "current"})
    assert asn.neuron_params().tau_phi == 2.0 and asn.neuron_params().input.value == "current"
    linear = build_layer({"type": "TimeDistributed", "module": {"type": "Linear", "in_features": 3,
                                                                  "out_features": 2, "bias": False}})
    assert linear.module.bias is None
    bn = build_layer({"type": "BatchNorm2d", "num_features": 3, "eps": 1e-3})
    assert bn.eps == 1e-3
    assert layer_config(snn.Flatten()) == {"type": "Flatten"}


# -- what cannot be saved ------------------------------------------------------------------
class _Custom(torch.nn.Module):
    def forward(self, x):
        return x * 2


def test_an_unknown_layer_is_a_type_error_naming_its_path_and_class(tmp_path):
    model = snn.Sequential(snn.Linear(3, 3), snn.LIF(), snn.TimeDistributed(_Custom()))
    with pytest.raises(TypeError, match=r"'model\.layers\.2\.module' of type test_saving\._Custom.*register_layer"):
        spikeflow.save(model, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()

    class Sub(snn.LIF):
        pass

    with pytest.raises(TypeError, match=r"'model' of type .*Sub"):
        saving.module_spec(Sub())
    with pytest.raises(TypeError, match="metadata must be a dict"):
        spikeflow.save(snn.LIF(), tmp_path / "x.safetensors", metadata=[1])
    with pytest.raises(TypeError, match="not JSON"):
        spikeflow.save(snn.LIF(), tmp_path / "x.safetensors", metadata={"x": float("nan")})
    with pytest.raises(TypeError):
        spikeflow.save(snn.LIF(), tmp_path / "x.safetensors", metadata={"x": object()})
    assert not (tmp_path / "x.safetensors").exists()


def test_registered_layers_and_containers_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(saving, "_CUSTOM_LAYERS", dict(saving._CUSTOM_LAYERS))
    monkeypatch.setattr(saving, "_CONTAINERS", dict(saving._CONTAINERS))

    class Gain(torch.nn.Module):
        stateful = False

        def __init__(self, n: int) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.rand(n))

        def forward(self, x):
            return x * self.gain

        def config(self):
            return {"n": self.gain.numel()}

        @classmethod
        def from_config(cls, config):
            return cls(**config)

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = snn.Sequential(snn.Linear(3, 3), Gain(3), snn.LIF())
            self.second = snn.LI()

        def forward(self, x):
            y, _ = self.first(x)
            return self.second(y)

    model = Pair()
    with pytest.raises(TypeError, match="Pair"):
        spikeflow.save(model, tmp_path / "p.safetensors")
    saving.register_layer(Gain)
    saving.register_container(Pair)
    loaded = spikeflow.load(spikeflow.save(model, tmp_path / "p.safetensors"))
    assert type(loaded) is Pair and torch.equal(loaded.first[1].gain, model.first[1].gain)
    x = _input((3,))
    _assert_same(_run(loaded, x), _run(model.eval(), x))

    # once unregistered, the file names the type it does not know
    monkeypatch.setattr(saving, "_CUSTOM_LAYERS", {})
    with pytest.raises(CheckpointError, match="unknown layer type 'Gain'"):
        spikeflow.load(tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="built-in layer type"):
        saving.register_layer(type("LIF", (torch.nn.Module,), {"config": 1, "from_config": 2}))
    with pytest.raises(TypeError, match="only torch.nn.Module classes can be registered, got 3"):
        saving.register_layer(3)

    class Stateful(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = 2.0
            self.inner = snn.LIF()

    saving.register_container(Stateful)
    with pytest.raises(TypeError, match="own state"):
        saving.module_spec(Stateful())


# -- bad files -----------------------------------------------------------------------------
def _small(tmp_path):
    torch.manual_seed(10)
    model = snn.Sequential(snn.Linear(3, 2), snn.LIF(learn_beta=True, shape=(2,)), snn.LI())
    return model, spikeflow.save(model, tmp_path / "small.safetensors")


def _rewrite(path, tensors=None, **meta):
    """Rewrite a saved file with changed tensors and metadata entries (None: removed)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    state = load_file(str(path))
    if tensors is not None:
        state = tensors(state)
    for key, value in meta.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(state, str(path), metadata=metadata)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        spikeflow.load(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        saving.load_metadata(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("keep", [0, 3, 8, 9, 40, -40, -1])
def test_truncated_files_are_checkpoint_errors(tmp_path, keep):
    _, path = _small(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(CheckpointError, match=r"small\.safetensors.*(truncated|not a safetensors|corrupt)"):
        spikeflow.load(path)


def test_foreign_and_damaged_headers(tmp_path):
    _, path = _small(tmp_path)
    data = path.read_bytes()
    noise = bytes(random.Random(0).randrange(256) for _ in range(300))
    cases = {
        "random": (noise, "not a safetensors file|larger than the file|oversized"),
        "length past the end": ((len(data) + 5).to_bytes(8, "little") + data[8:], "larger than the file"),
        "oversized": ((2**40).to_bytes(8, "little") + data[8:], "oversized header"),
        "not json": (data[:8] + b"[" + data[9:], "header is not valid JSON"),
        "json list": (len(b"[1]").to_bytes(8, "little") + b"[1]", "not a JSON object"),
        "torch.save": (b"PK\x03\x04" + b"\0" * 100, "not a safetensors file|larger than the file|oversized"),
    }
    for name, (content, message) in cases.items():
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as info:
            spikeflow.load(path)
        assert "small.safetensors" in str(info.value), name


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(format="spikeflow.model/0"), "not a saved spikeflow model.*'spikeflow.model/0'"),
        (dict(format=None), "not a saved spikeflow model.*None"),
        (dict(architecture="{not json"), "architecture is not valid JSON"),
        (dict(architecture="[]"), "architecture is not a JSON dict"),
        (dict(architecture=None), "no 'architecture' entry"),
        (dict(architecture=json.dumps({"type": "Warp", "factor": 9})), "unknown layer type 'Warp'"),
        (dict(architecture=json.dumps({"type": "LIF", "values": {}})), "cannot be rebuilt.*LIF needs the values"),
        (dict(user="{"), "user is not valid JSON"),
        (dict(aliases=json.dumps({"layers.2.beta_value": "nothing"})), "alias"),
    ],
)
def test_corrupt_metadata_is_a_checkpoint_error(tmp_path, change, message):
    _, path = _small(tmp_path)
    _rewrite(path, **change)
    with pytest.raises(CheckpointError, match=message) as info:
        spikeflow.load(path)
    assert "small.safetensors" in str(info.value)


def test_load_metadata_checks_the_header_and_format(tmp_path):
    _, path = _small(tmp_path)
    _rewrite(path, format="something/else")
    with pytest.raises(CheckpointError, match="small.safetensors is not a saved spikeflow model"):
        saving.load_metadata(path)
    _rewrite(path, format="spikeflow.model/1", user="[1, 2]")
    with pytest.raises(CheckpointError, match="user is not a JSON dict"):
        saving.load_metadata(path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="larger than the file"):
        saving.load_metadata(path)


def _drop(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize(
    "tensors, message",
    [
        (_drop("layers.1.beta_logit"), r"missing tensors \['layers.1.beta_logit'\]"),
        (lambda s: {**s, "layers.9.weight": torch.ones(2)}, r"unexpected tensors \['layers.9.weight'\]"),
        (lambda s: {**s, "layers.0.module.weight": torch.ones(2, 4)}, r"'layers.0.module.weight' has shape \[2, 4\]"),
        (lambda s: {**s, "layers.1.beta_logit": torch.ones(3)}, r"'layers.1.beta_logit' has shape \[3\]"),
        (lambda s: {**s, "layers.0.module.bias": torch.ones(2, dtype=torch.int32)}, "has dtype torch.int32"),
    ],
)
def test_tensors_that_do_not_fit_are_checkpoint_errors(tmp_path, tensors, message):
    _, path = _small(tmp_path)
    _rewrite(path, tensors)
    with pytest.raises(CheckpointError, match=message) as info:
        spikeflow.load(path)
    assert isinstance(info.value, saving.ModelFileError) and "small.safetensors" in str(info.value)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_loads_or_raises_checkpoint_error(tmp_path, data):
    _, path = _small(tmp_path)
    original = path.read_bytes()
    damaged = bytearray(original)
    header_end = 8 + int.from_bytes(original[:8], "little")
    for _ in range(data.draw(st.integers(1, 4), label="changes")):
        # mostly in the header (the JSON), where a change matters most
        limit = header_end if data.draw(st.booleans(), label="in header") else len(damaged)
        position = data.draw(st.integers(0, limit - 1), label="position")
        damaged[position] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)), label="length")]
    path.write_bytes(bytes(damaged))
    try:
        model = spikeflow.load(path)
    except CheckpointError as exc:
        assert "small.safetensors" in str(exc)
    else:
        assert isinstance(model, torch.nn.Module) and not model.training
        assert set(model.state_dict()) == {"layers.0.module.weight", "layers.0.module.bias",
                                           "layers.1.beta_logit", "layers.1.threshold_value", "layers.2.beta_value"}


# -- atomic writing ------------------------------------------------------------------------
@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch, failing):
    import spikeflow.train.checkpoint as checkpoint

    model, path = _small(tmp_path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if failing == "write":  # half the bytes reach the temporary file, then the write fails
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                raise OSError("disk full")

        monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(checkpoint.os, failing, fail)
    other = snn.Sequential(snn.Linear(3, 2), snn.LIF(0.5), snn.LI())
    with pytest.raises(OSError, match="disk full"):
        spikeflow.save(other, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.safetensors"]
    loaded = spikeflow.load(path)
    x = _input((3,))
    _assert_same(_run(loaded, x), _run(model.eval(), x))


def test_map_location_and_an_empty_state(tmp_path):
    asn = snn.ASN(tau_phi=4.0)
    path = spikeflow.save(asn, tmp_path / "asn.safetensors")
    loaded = spikeflow.load(path, map_location=torch.device("cpu"))
    assert loaded.neuron_params() == asn.neuron_params() and loaded.state_dict() == {}
    with pytest.raises(ValueError, match="map_location"):
        spikeflow.load(path, map_location="no-such-device")
