"""The conversion pipeline's core: tracing, folding, calibration, rate coding,
spiking max pooling, finalizing, saving, simulating."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spikeflow.convert import (
    ConversionError,
    Kind,
    SpikingMaxPool,
    SpikingNetwork,
    calibrate,
    convert,
    fold_batchnorm,
    rate_network,
    simulate,
    trace,
)
from spikeflow.train.checkpoint import CheckpointError


def _randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


class LeNetLike(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 5, padding=2)
        self.b1 = torch.nn.BatchNorm2d(4)
        self.pool = torch.nn.MaxPool2d(2)
        self.c2 = torch.nn.Conv2d(4, 8, 3)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8 * 2 * 2, 16)
        self.out = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.b1(self.c1(x))))
        x = F.avg_pool2d(F.relu(self.c2(x)), 2)
        x = self.drop(x.view(x.size(0), -1))
        return self.out(torch.relu(self.fc(x)))


class Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.a = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.b = torch.nn.Conv2d(4, 2, 1)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.bn(self.a(h)) + h)
        h = torch.cat([h, torch.relu(self.b(h))], dim=1)
        return self.fc(torch.flatten(self.gap(h), 1))


def _lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(LeNetLike())


def test_trace_maps_every_layer_and_runs_as_the_ann():
    model = _lenet()
    graph = trace(model)
    kinds = [n.kind for n in graph]
    assert kinds == [
        Kind.INPUT, Kind.CONV, Kind.BATCHNORM, Kind.RELU, Kind.MAXPOOL, Kind.CONV, Kind.RELU,
        Kind.AVGPOOL, Kind.FLATTEN, Kind.LINEAR, Kind.RELU, Kind.LINEAR, Kind.OUTPUT,
    ]  # dropout removed
    x = torch.rand(6, 1, 14, 14)
    torch.testing.assert_close(graph.run(x), model(x))


def test_trace_works_on_a_copy_and_keeps_the_model_untouched():
    model = _lenet().train()
    before = copy.deepcopy(model.state_dict())
    net = convert(model, torch.rand(20, 1, 14, 14))
    assert model.training  # not switched to eval
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert isinstance(net, SpikingNetwork)


def test_trace_residual_add_and_concatenation():
    torch.manual_seed(1)
    model = _randomize_bn(Residual())
    graph = trace(model)
    kinds = [n.kind for n in graph]
    assert Kind.ADD in kinds and Kind.CAT in kinds
    x = torch.rand(4, 2, 6, 6)
    torch.testing.assert_close(graph.run(x), model(x))


@pytest.mark.parametrize(
    "layer, max_value",
    [(torch.nn.ReLU6(), 6.0), (torch.nn.Hardtanh(0.0, 2.5), 2.5)],
)
def test_clipped_relus_are_relus_with_a_maximum(layer, max_value):
    graph = trace(torch.nn.Sequential(torch.nn.Linear(3, 3), layer))
    relu = [n for n in graph if n.kind is Kind.RELU][0]
    assert relu.attrs["max"] == max_value


def test_functional_clamp_is_a_clipped_relu():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x):
            return torch.clamp(self.fc(x), 0, 1.5).clamp(min=0)

    relus = [n for n in trace(M()) if n.kind is Kind.RELU]
    assert [r.attrs.get("max") for r in relus] == [1.5, None]


def test_unsupported_layer_is_named_with_its_place_and_the_supported_list():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 2))
    with pytest.raises(ConversionError, match=r"layer '1' \(Sigmoid\) at position 2 of 5.*supported layers: Linear"):
        trace(model)


def test_constants_and_parameters_used_directly_are_rejected():
    class AddConst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)
            self.offset = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.fc(x) + self.offset

    with pytest.raises(ConversionError, match="reads a parameter or buffer directly"):
        trace(AddConst())

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) + 1.0

    with pytest.raises(ConversionError, match="sum of two tensors"):
        trace(Scaled())


def test_untraceable_model_is_a_conversion_error():
    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ConversionError, match="torch.fx cannot trace Branchy"):
        trace(Branchy())


def test_fold_batchnorm_keeps_the_function_and_removes_the_layer():
    torch.manual_seed(1)
    for model in (_lenet(), _randomize_bn(Residual())):
        graph = trace(model)
        folded = fold_batchnorm(graph)
        assert not any(n.kind is Kind.BATCHNORM for n in folded)
        assert any(n.kind is Kind.BATCHNORM for n in graph)  # the input graph is unchanged
        x = torch.rand(5, *((1, 14, 14) if isinstance(model, LeNetLike) else (2, 6, 6)))
        torch.testing.assert_close(folded.run(x), model(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_after_a_pooling_stays_as_an_affine_layer():
    model = _randomize_bn(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AvgPool2d(2), torch.nn.BatchNorm2d(3)))
    folded = fold_batchnorm(trace(model))
    assert [n.kind for n in folded].count(Kind.BATCHNORM) == 1
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(folded.run(x), model(x))


def test_calibration_max_and_percentile_by_hand():
    # Identity weights: the activations are the inputs' positive parts.
    fc = torch.nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(2))
        fc.bias.zero_()
    graph = trace(torch.nn.Sequential(fc, torch.nn.ReLU()))
    values = torch.arange(1, 101, dtype=torch.float32)
    data = torch.stack([values, 2 * values], dim=1)  # channel 0: 1..100, channel 1: 2..200
    name = [n.name for n in graph if n.kind is Kind.RELU][0]
    assert calibrate(graph, data, method="max").scales[name].item() == 200.0
    per_channel = calibrate(graph, data, method="max", per_channel=True).scales[name]
    assert per_channel.tolist() == [100.0, 200.0]
    # the 50th percentile of the 200 positive values {1..100} U {2, 4, .., 200}
    pooled = torch.cat([values, 2 * values]).double()
    expected = torch.quantile(pooled, 0.5).item()
    assert calibrate(graph, data, method="percentile", percentile=50).scales[name].item() == pytest.approx(expected)
    # negative inputs are ignored (the percentile is of the positive activations)
    with_negatives = torch.cat([data, -data])
    assert calibrate(graph, with_negatives, percentile=50).scales[name].item() == pytest.approx(expected)


def test_calibration_errors_name_the_problem():
    graph = trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    with pytest.raises(ConversionError, match="calibration data is needed"):
        calibrate(graph, None)
    with pytest.raises(ValueError, match="percentile must be in"):
        calibrate(graph, torch.rand(3, 2), percentile=0)
    dead = torch.nn.Linear(2, 2)
    with torch.no_grad():
        dead.weight.zero_()
        dead.bias.fill_(-1.0)
    with pytest.raises(ConversionError, match="never positive on 3 calibration samples"):
        calibrate(trace(torch.nn.Sequential(dead, torch.nn.ReLU())), torch.rand(3, 2))
    # a clipped ReLU needs no data
    clipped = trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU6()))
    assert list(calibrate(clipped, None).scales.values())[0].item() == 6.0


def test_rate_neuron_counts_spikes_like_the_rounding_formula():
    """One IF neuron (threshold lam, reset by subtraction, membrane starting at lam/2)
    with constant input z emits floor(t z / lam + 1/2) spikes in t steps (clipped to [0, t])."""
    fc = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        fc.weight.fill_(1.0)
    lam = 2.0
    graph = trace(torch.nn.Sequential(fc, torch.nn.ReLU6(), torch.nn.Linear(1, 1)))
    graph.nodes[2].attrs["max"] = lam
    net = rate_network(graph, calibrate(graph, None), fold_scales=False)
    z = (torch.rand(200, 1, generator=torch.Generator().manual_seed(0)) * 4 - 1)  # no exact ties
    t = 37
    _, _, values = net.run(z.unsqueeze(0).expand(t, *z.shape), keep=True)
    neuron = [name for name, _ in net.neurons()][0]
    spikes = values[neuron].sum(0).squeeze(1)
    expected = torch.floor(t * z.squeeze(1).double() / lam + 0.5).clamp(0, t)
    assert torch.equal(spikes.double(), expected)


def test_spiking_max_pool_passes_the_most_active_input_by_hand():
    pool = SpikingMaxPool(torch.nn.MaxPool2d(2))
    # one 2x2 window: input A spikes at t=0,1; input B at t=2,3,4
    x = torch.zeros(5, 1, 1, 2, 2)
    x[0, 0, 0, 0, 0] = x[1, 0, 0, 0, 0] = 1  # A
    x[2, 0, 0, 1, 1] = x[3, 0, 0, 1, 1] = x[4, 0, 0, 1, 1] = 1  # B
    y, running = pool(x)
    # counts A: 1,2,2,2,2; B: 0,0,1,2,3 -> gate A, A, A, A (tie 2-2: first index, A), B
    assert y.flatten().tolist() == [1, 1, 0, 0, 1]
    assert running.flatten().tolist() == [2, 0, 0, 3]
    # fed in two pieces with the state in between: the same
    y1, s = pool(x[:2])
    y2, s = pool(x[2:], s)
    assert torch.equal(torch.cat([y1, y2]), y)
    with pytest.raises(ValueError, match="expects"):
        pool(torch.zeros(3, 2, 4))


def test_converted_network_approaches_the_ann_as_time_grows():
    model = _lenet()
    x = torch.rand(64, 1, 14, 14)
    ann = model(x)
    net = convert(model, x, normalization="max")
    outputs = simulate(net, x, [16, 256])
    errors = {t: (o - ann).abs().mean().item() for t, o in outputs.items()}
    assert errors[256] < errors[16] / 3  # the rate code's error falls with T
    agree = (outputs[256].argmax(1) == ann.argmax(1)).float().mean().item()
    assert agree >= 0.9


def test_residual_network_converts_and_approaches_the_ann():
    torch.manual_seed(2)
    model = _randomize_bn(Residual())
    x = torch.rand(32, 2, 6, 6)
    net = convert(model, x, normalization="max", per_channel=True)
    ann = model(x)
    out = simulate(net, x, [512])[512]
    assert (out - ann).abs().mean() < 0.05 * ann.abs().mean() + 1e-3


def test_finalize_folds_scales_without_changing_the_output():
    model = _lenet()
    x = torch.rand(16, 1, 14, 14)
    graph = fold_batchnorm(trace(model))
    calibration = calibrate(graph, x, per_channel=True)
    plain = rate_network(graph, calibration, fold_scales=False)
    folded = rate_network(graph, calibration)
    assert sum(type(m).__name__ == "Scale" for _, m in plain.named_layers()) == 3
    assert sum(type(m).__name__ == "Scale" for _, m in folded.named_layers()) == 0
    a, b = simulate(plain, x, 20)[20], simulate(folded, x, 20)[20]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_simulate_in_chunks_equals_one_run_and_validates_timesteps():
    model = _lenet()
    x = torch.rand(8, 1, 14, 14)
    net = convert(model, x)
    whole = simulate(net, x, [3, 10, 24])
    pieces = simulate(net, x, [24, 10, 3], chunk=7)
    for t in (3, 10, 24):
        torch.testing.assert_close(whole[t], pieces[t])
    with pytest.raises(ValueError, match="positive integers"):
        simulate(net, x, [0, 4])


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(2)
    model = _randomize_bn(Residual())
    x = torch.rand(8, 2, 6, 6)
    net = convert(model, x, per_channel=True)
    path = net.save(tmp_path / "snn.pt")
    loaded = SpikingNetwork.load(path)
    assert loaded.info == net.info
    torch.testing.assert_close(simulate(loaded, x, 12)[12], simulate(net, x, 12)[12])
    # the file holds only tensors and plain values
    torch.load(path, weights_only=True)


def test_loading_a_corrupt_or_foreign_file_names_it(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="bad.pt is corrupt or truncated"):
        SpikingNetwork.load(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        SpikingNetwork.load(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a saved spikeflow spiking network"):
        SpikingNetwork.load(foreign)


def test_convert_rejects_unknown_coding():
    with pytest.raises(ValueError, match="unknown coding 'morse'"):
        convert(torch.nn.Sequential(torch.nn.Linear(2, 2)), coding="morse")
