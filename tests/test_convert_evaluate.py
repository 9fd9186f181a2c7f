"""spikeflow.convert.evaluate: synaptic operations counted by hand and by brute force,
spike statistics of IF neurons against their closed form, accuracies against
simulate, the report's JSON form, and the TensorBoard events read back."""

from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
import pytest
import torch

from spikeflow import nn as snn
from spikeflow.convert import SpikingNetwork, Step, convert, simulate
from spikeflow.convert.ann import ann_accuracy
from spikeflow.convert.evaluate import (
    E_AC,
    E_MAC,
    ConversionReport,
    dense_macs,
    evaluate_conversion,
    log_to_tensorboard,
    synaptic_operations,
)
from spikeflow.nn import TimeDistributed


# -- synaptic operations -------------------------------------------------------------------
def test_linear_synops_are_nonzero_inputs_times_out_features():
    layer = torch.nn.Linear(5, 3)
    x = torch.tensor([
        [1.0, 0.0, 0.0, 1.0, 1.0],   # 3 spikes
        [0.0, 0.0, 0.0, 0.0, 0.0],   # silent
        [0.5, -2.0, 0.0, 0.0, 0.0],  # 2 non-zero values (graded / scaled events)
        [1.0, 1.0, 1.0, 1.0, 1.0],   # all
    ])
    assert synaptic_operations(layer, x).tolist() == [9, 0, 6, 15]
    # leading feature dims: every non-zero element has the same fan-out
    assert synaptic_operations(layer, x.view(2, 2, 5)).tolist() == [9, 21]


def test_conv_synops_with_padding_and_stride_by_hand():
    # 3x3 input, 3x3 kernel, stride 2, padding 1 -> 2x2 output. Output (p, q) sees input
    # rows 2p-1..2p+1 and columns 2q-1..2q+1, so the number of outputs that each input
    # position reaches is
    #     1 2 1
    #     2 4 2
    #     1 2 1
    conv = torch.nn.Conv2d(1, 3, 3, stride=2, padding=1)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 0, 2, 1] = 1.0  # fan-outs 1 + 4 + 2 positions
    assert synaptic_operations(conv, x).tolist() == [(1 + 4 + 2) * 3]
    # all nine inputs: 16 positions-connections, the sum of the table
    assert dense_macs(conv, (1, 3, 3)) == 16 * 3


def _brute_force(conv: torch.nn.Conv2d, x: torch.Tensor) -> int:
    """Count (non-zero input, output) connections one by one: output channel o, position
    (p, q), kernel tap (c, a, b) reads input (c, p*s - pad + a*d, q*s - pad + b*d)."""
    c_in, h, w = x.shape
    out_h, out_w = conv(x.unsqueeze(0)).shape[2:]
    per_group_in, per_group_out = c_in // conv.groups, conv.out_channels // conv.groups
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    count = 0
    for o, p, q, a, b in itertools.product(range(conv.out_channels), range(out_h), range(out_w), range(kh), range(kw)):
        i, j = p * sh - ph + a * dh, q * sw - pw + b * dw
        if conv.padding_mode == "circular":
            i, j = i % h, j % w
        elif not (0 <= i < h and 0 <= j < w):
            continue
        group = o // per_group_out
        for c in range(group * per_group_in, (group + 1) * per_group_in):
            count += int(x[c, i, j] != 0)
    return count


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), stride=(2, 1), padding=(0, 2)),
        dict(kernel_size=3, stride=1, padding=2, dilation=2),
        dict(kernel_size=3, stride=1, padding=1, groups=2),
        dict(kernel_size=3, stride=2, padding=1, padding_mode="circular"),
    ],
)
def test_conv_synops_match_a_brute_force_count(options):
    conv = torch.nn.Conv2d(4, 6, **options)
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 4, 5, 6, generator=generator) < 0.3).float()
    expected = [_brute_force(conv, sample) for sample in x]
    assert synaptic_operations(conv, x).tolist() == expected
    assert dense_macs(conv, (4, 5, 6)) == _brute_force(conv, torch.ones(4, 5, 6))


def test_conv1d_synops_by_hand():
    conv = torch.nn.Conv1d(2, 5, 3, padding=1)  # every position reaches 3 outputs, the ends 2
    x = torch.tensor([[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]]])
    assert synaptic_operations(conv, x).tolist() == [(2 + 3 + 2) * 5]


def test_dense_macs_of_lenet_layers_match_the_textbook_formula():
    # out_h * out_w * C_out * C_in * k * k for unpadded convolutions, in * out for Linear
    assert dense_macs(torch.nn.Conv2d(1, 6, 5), (1, 32, 32)) == 28 * 28 * 6 * 1 * 5 * 5
    assert dense_macs(torch.nn.Conv2d(6, 16, 5), (6, 14, 14)) == 10 * 10 * 16 * 6 * 5 * 5
    assert dense_macs(torch.nn.Conv2d(4, 8, 3, stride=2, groups=2), (4, 7, 7)) == 3 * 3 * 8 * 2 * 3 * 3
    assert dense_macs(torch.nn.Linear(400, 120), (400,)) == 400 * 120


def test_operation_counts_reject_bad_layers_and_shapes():
    with pytest.raises(TypeError, match="Linear and Conv"):
        synaptic_operations(torch.nn.ReLU(), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"Linear\(5, 3\) expects input"):
        synaptic_operations(torch.nn.Linear(5, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="Conv2d expects input"):
        synaptic_operations(torch.nn.Conv2d(2, 3, 3), torch.ones(2, 3, 5, 5))


# -- a network whose spikes are known -----------------------------------------------------
def _if_network(coding: str = "rate", out_features: int = 3):
    """input -> identity Linear (the analog currents) -> IF(threshold 1, v0 = 0.5) ->
    Linear(4, out_features) -> output, and the matching ANN."""
    fc1 = torch.nn.Linear(4, 4, bias=False)
    fc2 = torch.nn.Linear(4, out_features)
    with torch.no_grad():
        fc1.weight.copy_(torch.eye(4))
        fc2.weight.copy_(torch.linspace(-1, 1, 4 * out_features).view(out_features, 4))
    steps = [
        Step("x", "input", []),
        Step("fc1", "layer", ["x"]),
        Step("if", "layer", ["fc1"], {"initial_membrane": 0.5}),
        Step("fc2", "layer", ["if"]),
        Step("out", "output", ["fc2"]),
    ]
    layers = {"fc1": TimeDistributed(fc1), "if": snn.IF(threshold=1.0), "fc2": TimeDistributed(fc2)}
    net = SpikingNetwork(steps, layers, {"coding": coding}).eval()
    ann = torch.nn.Sequential(fc1, torch.nn.ReLU(), fc2).eval()
    return ann, net


# Constant currents I per (sample, neuron); 0.5 + I t never an integer for t <= 20.
CURRENTS = torch.tensor([
    [0.37, 0.11, 0.00, -0.40],
    [1.60, 0.73, -0.30, 0.91],
    [0.52, 0.07, 0.01, 0.64],
])


def _if_counts(currents: torch.Tensor, t: int) -> torch.Tensor:
    """Spikes of an IF neuron (threshold 1, reset by subtraction, v0 = 1/2) after t
    steps of the constant input I: the charge 1/2 + I t, less one per spike, stays
    below threshold, so n(t) = floor(1/2 + I t), at most one spike per step."""
    return torch.clamp(torch.floor(0.5 + currents.double() * t), 0, t).long()


def test_if_layer_spike_statistics_follow_the_floor_formula():
    ann, net = _if_network()
    labels = torch.tensor([0, 1, 2])
    timesteps = [3, 7, 20]
    report = evaluate_conversion(ann, net, CURRENTS, labels, timesteps, batch_size=2, chunk=6)

    c = _if_counts(CURRENTS, 20)  # [sample, neuron]
    assert c.tolist() == [[7, 2, 0, 0], [20, 15, 0, 18], [10, 1, 0, 13]]
    (layer,) = report.neurons
    assert (layer.name, layer.neurons, layer.samples, layer.steps) == ("if", 4, 3, 20)
    assert layer.total_spikes == int(c.sum())
    assert layer.spikes_mean == pytest.approx(c.double().mean().item())
    assert layer.spikes_var == pytest.approx(c.double().var(unbiased=False).item())
    assert layer.firing_rate == pytest.approx(c.double().mean().item() / 20)
    assert layer.max_spikes == 20
    assert layer.silent_fraction == pytest.approx(4 / 12)
    assert layer.dead_fraction == pytest.approx(1 / 4)  # neuron 2 never spikes
    assert layer.count_histogram == torch.bincount(c.flatten()).tolist()
    # spikes at step t (0-based) = n(t + 1) - n(t), summed over samples and neurons
    per_step = [int((_if_counts(CURRENTS, t + 1) - _if_counts(CURRENTS, t)).sum()) for t in range(20)]
    assert layer.spikes_per_step == per_step
    times = np.repeat(np.arange(20), per_step)
    assert layer.spike_time_mean == pytest.approx(times.mean())
    assert layer.spike_time_var == pytest.approx(times.var())
    assert layer.first_spike_histogram is None and layer.single_spike is None  # not TTFS

    # fc1 reads the analog input (dense MACs, once per sample); fc2 reads spikes:
    # 3 accumulates per spike.
    fc1, fc2 = report.synapses
    assert (fc1.name, fc1.analog, fc1.macs) == ("fc1", True, 16)
    assert (fc2.name, fc2.analog, fc2.macs) == ("fc2", False, 12)
    for t in timesteps:
        spikes = int(_if_counts(CURRENTS, t).sum())
        assert fc2.synops[t] == pytest.approx(3 * spikes / 3)
        assert fc1.synops[t] == 0
        assert report.synops[t] == pytest.approx(spikes)
        assert report.snn_energy_j[t] == pytest.approx(16 * E_MAC + spikes * E_AC)
        assert report.energy_ratio[t] == pytest.approx((16 * E_MAC + spikes * E_AC) / (28 * E_MAC))
    assert (report.ann_macs, report.input_macs) == (28, 16)
    assert report.ann_energy_j == pytest.approx(28 * E_MAC)


def test_ttfs_first_spike_times_and_the_single_spike_check():
    # With 0 < I < 0.15 the second spike (charge 1/2 + I t > 2) comes after step 10;
    # the first comes at 0-based step floor(1 / (2 I)).
    currents = torch.tensor([[0.12, 0.07, 0.0, 0.14], [0.09, 0.055, 0.12, 0.0]])
    ann, net = _if_network(coding="ttfs")
    report = evaluate_conversion(ann, net, currents, torch.tensor([0, 1]), [10], chunk=3)
    (layer,) = report.neurons
    first = [4, 7, 3, 5, 9, 4]
    assert layer.max_spikes == 1 and layer.single_spike is True
    assert layer.first_spike_histogram == np.bincount(first, minlength=10).tolist()
    assert layer.first_spike_mean == pytest.approx(np.mean(first))
    assert layer.first_spike_var == pytest.approx(np.var(first))
    assert layer.spikes_per_step == layer.first_spike_histogram  # one spike each

    # in 7 steps I = 0.3 fires at steps 1 and 5: the check fails, the first spike is still 1
    report = evaluate_conversion(ann, net, torch.tensor([[0.3, 0.0, 0.0, 0.12]]), torch.tensor([0]), [7])
    (layer,) = report.neurons
    assert layer.max_spikes == 2 and layer.single_spike is False
    assert layer.first_spike_histogram == np.bincount([1, 4], minlength=7).tolist()
    assert layer.spikes_per_step == np.bincount([1, 4, 5], minlength=7).tolist()


# -- converted networks ------------------------------------------------------------------
def _converted(seed: int = 0):
    torch.manual_seed(seed)
    ann = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 2 * 2, 5),
    ).eval()
    images = torch.rand(10, 1, 8, 8)
    return ann, convert(ann, images, coding="rate"), images


@pytest.mark.parametrize("readout", ["mean", "last"])
def test_accuracy_and_agreement_match_simulate(readout):
    ann, net, images = _converted(1)
    net.info["readout"] = readout
    with torch.no_grad():
        ann_pred = ann(images).argmax(1)
    labels = ann_pred.clone()
    labels[::3] = (labels[::3] + 1) % 5  # 4 of 10 wrong for the ANN
    timesteps = [1, 3, 12]
    report = evaluate_conversion(ann, net, images, labels, timesteps, batch_size=4, chunk=5, progress=True)
    outputs = simulate(net, images, timesteps, chunk=5)
    assert report.timesteps == timesteps and report.samples == 10 and report.readout == readout
    assert report.ann_accuracy == ann_accuracy(ann, images, labels) == 0.6
    for t in timesteps:
        pred = outputs[t].argmax(1)
        assert report.snn_accuracy[t] == int((pred == labels).sum()) / 10
        assert report.agreement[t] == int((pred == ann_pred).sum()) / 10
    assert len(set(report.agreement.values())) > 1  # the agreement does change with T


def test_counts_of_a_converted_network_match_its_recorded_values():
    ann, net, images = _converted(1)
    timesteps = [1, 4, 9]
    report = evaluate_conversion(ann, net, images, torch.zeros(10, dtype=torch.long), timesteps, batch_size=3)
    _, _, values = net.run(images.unsqueeze(0).expand(9, *images.shape), keep=True)

    steps = {s.name: s for s in net.steps}
    assert [(s.name, s.analog) for s in report.synapses] == [("0", True), ("3", False), ("6", False)]
    for layer in report.synapses:
        module = net.layer(layer.name).module
        x = values[steps[layer.name].inputs[0]]  # [T, B, ...]
        assert layer.macs == dense_macs(module, tuple(x.shape[2:]))
        if layer.analog:
            continue
        per_step = torch.stack([synaptic_operations(module, x[t]).sum() for t in range(9)])
        for t in timesteps:
            assert layer.synops[t] == pytest.approx(int(per_step[:t].sum()) / 10)
        assert layer.synops[9] > layer.synops[4] > 0
    assert report.input_macs == dense_macs(net.layer("0").module, (1, 8, 8)) == 22 * 22 * 4  # padded borders
    for layer in report.neurons:
        spikes = values[layer.name] != 0
        assert layer.total_spikes == int(spikes.sum())
        assert layer.spikes_per_step == spikes.flatten(1).sum(1).tolist()
        assert layer.max_spikes == int(spikes.sum(0).max())
        assert layer.neurons == spikes[0, 0].numel()


def test_report_json_round_trip_is_nan_free():
    ann, net, images = _converted()
    report = evaluate_conversion(ann, net, images, torch.zeros(10, dtype=torch.long), [3, 6])
    silent = ConversionReport.from_dict(report.to_dict())
    assert silent == report
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert ConversionReport.from_dict(json.loads(text)) == report
    # a network that never spikes: no spike times, so None instead of NaN
    with torch.no_grad():
        for _, neuron in net.neurons():
            neuron.threshold.fill_(1e9)
    quiet = evaluate_conversion(ann, net, images, torch.zeros(10, dtype=torch.long), [3])
    assert quiet.neurons[0].total_spikes == 0 and quiet.synops[3] == 0
    data = json.loads(json.dumps(quiet.to_dict(), allow_nan=False))
    assert data["neurons"][0]["spike_time_mean"] is None
    assert ConversionReport.from_dict(data) == quiet
    lines = report.table().splitlines()
    assert len(lines) == 2 + 2 and lines[2].split()[0] == "3" and lines[3].split()[0] == "6"


def test_bad_inputs_are_named():
    ann, net, images = _converted()
    labels = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        evaluate_conversion(ann, net, images, labels[:9], [4])
    with pytest.raises(ValueError, match="labels must be integer"):
        evaluate_conversion(ann, net, images, labels.float(), [4])
    with pytest.raises(ValueError, match="floating-point"):
        evaluate_conversion(ann, net, images.to(torch.uint8), labels, [4])
    with pytest.raises(TypeError, match="SpikingNetwork"):
        evaluate_conversion(ann, ann, images, labels, [4])
    with pytest.raises(ValueError, match="timesteps"):
        evaluate_conversion(ann, net, images, labels, [0])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_conversion(ann, net, images, labels, [4], batch_size=0)


# -- TensorBoard ---------------------------------------------------------------------------
def test_tensorboard_events_hold_the_report(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ann, net = _if_network(coding="ttfs")
    currents = torch.tensor([[0.12, 0.09, 0.0, 0.14], [0.3, 0.11, 0.12, 0.0]])
    report = evaluate_conversion(ann, net, currents, torch.tensor([0, 1]), [4, 7])
    assert log_to_tensorboard(report, tmp_path, ann=ann, snn=net) == tmp_path

    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = lambda tag: [(e.step, e.value) for e in acc.Scalars(tag)]  # noqa: E731
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    assert scalars("accuracy/snn") == [(t, f32(report.snn_accuracy[t])) for t in (4, 7)]
    assert scalars("accuracy/ann") == [(t, f32(report.ann_accuracy)) for t in (4, 7)]
    assert scalars("synops/per_sample") == [(t, f32(report.synops[t])) for t in (4, 7)]
    assert scalars("energy/ratio") == [(t, f32(report.energy_ratio[t])) for t in (4, 7)]
    (layer,) = report.neurons
    assert scalars("spikes_per_neuron/mean/if") == [(7, f32(layer.spikes_mean))]
    assert scalars("spikes_per_neuron/var/if") == [(7, f32(layer.spikes_var))]
    assert scalars("first_spike_time/mean/if") == [(7, f32(layer.first_spike_mean))]

    counts = torch.tensor([[1, 1, 0, 1], [2, 1, 1, 0]], dtype=torch.float64)  # spikes per neuron and sample
    (event,) = acc.Histograms("spike_counts/if")
    h = event.histogram_value
    assert (event.step, h.num, h.sum, h.sum_squares) == (7, 8, counts.sum().item(), (counts**2).sum().item())
    assert (h.min, h.max) == (0.0, 2.0) and list(h.bucket) == [2, 5, 1]
    first = [4, 5, 3, 1, 4, 4]  # first-spike steps; the 0.3 neuron spikes again at step 5
    (event,) = acc.Histograms("first_spike_times/if")
    assert (event.histogram_value.num, event.histogram_value.sum) == (6, sum(first))
    (event,) = acc.Histograms("spike_times/if")
    assert (event.histogram_value.num, event.histogram_value.sum) == (7, sum(first) + 5)
    tags = acc.Tags()["histograms"]
    assert {"weights/ann/0.weight", "weights/ann/2.bias", "weights/snn/fc2.weight", "weights/snn/if.threshold"} <= set(tags)
    (event,) = acc.Histograms("weights/snn/fc1.weight")
    assert event.histogram_value.num == 16 and event.histogram_value.sum == 4.0  # the identity


def test_tensorboard_missing_is_a_clear_import_error(tmp_path, monkeypatch):
    ann, net = _if_network()
    report = evaluate_conversion(ann, net, CURRENTS, torch.tensor([0, 1, 2]), [2])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install spikeflow\[tensorboard\]"):
        log_to_tensorboard(report, tmp_path)


def test_ttfs_synaptic_operations_count_one_event_per_spike():
    """A TTFS spike reaches the next weights as a step current: one event per spike,
    so a Linear after a neuron layer does (spikes of that layer) x out_features."""
    from spikeflow.convert import calibrate, fold_batchnorm, trace, ttfs_dynamic_network
    from spikeflow.convert.evaluate import evaluate_conversion

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4)).eval()
    x = torch.rand(20, 6)
    graph = fold_batchnorm(trace(model))
    net = ttfs_dynamic_network(graph, calibrate(graph, x), window=5, info={"coding": "ttfs-dynamic"})
    total = net.info["total_steps"]
    report = evaluate_conversion(model, net, x, torch.zeros(20, dtype=torch.long), [total], batch_size=7)
    _, _, values = net.run(x.unsqueeze(0).expand(total, *x.shape), keep=True)
    spikes = values[net.neurons()[0][0]].sum().item() / len(x)
    second = [s for s in report.synapses if not s.analog][0]
    assert second.synops[total] == pytest.approx(spikes * 4)
