"""Bad input at the converter's public boundary: every case raises a clear error
that names the argument, what was expected and what came (issue 8).

Cases already covered elsewhere (tests/test_convert*.py: an unknown coding, a
Sigmoid layer, percentile=0 in calibrate, missing calibration data, a dead layer,
labels of the wrong length or dtype, batch_size=0, ...) are not repeated here.
"""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow.convert import (
    ASNActivation,
    QCFS,
    Scale,
    SpikingNetwork,
    asn_model,
    asn_network,
    calibrate,
    clamp_activations,
    convert,
    finalize,
    qcfs_model,
    rate_network,
    simulate,
    to_spiking,
    trace,
    ttfs_clamped_network,
    ttfs_dynamic_network,
    ttfs_network,
)
from spikeflow.convert.calibrate import check_calibration_options
from spikeflow.convert.evaluate import evaluate_conversion
from spikeflow.convert.graph import ConversionError
from spikeflow.convert.models import lenet5, resnet18, seed002_net, vgg
from spikeflow.convert.presets import build_ann, get_preset, load_images

NAN, INF = math.nan, math.inf


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def _with(value: float, layer: int, name: str, index: tuple) -> torch.nn.Module:
    """The MLP with one entry of ``layer.name`` set to ``value``."""
    model = _mlp()
    with torch.no_grad():
        getattr(model[layer], name)[index] = value
    return model


def _bn_with_nan_mean() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model[1].running_mean[2] = NAN
    return model


def _bn_with_negative_var() -> torch.nn.Module:
    model = _bn_with_nan_mean()
    model[1].running_mean.zero_()
    model[1].running_var[0] = -0.5
    return model


X = torch.rand(20, 4, generator=torch.Generator().manual_seed(1))
LABELS = torch.zeros(20, dtype=torch.long)


@pytest.fixture(scope="module")
def net() -> SpikingNetwork:
    return convert(_mlp(), X)


# ----------------------------------------------------------------------------- convert()
CONVERT_CASES = [
    # (id, call, error, match)
    ("model-none", lambda: convert(None, X), TypeError, "model must be a torch.nn.Module or a LayerGraph, got NoneType"),
    ("model-str", lambda: convert("lenet5", X), TypeError, "model must be a torch.nn.Module or a LayerGraph, got str"),
    ("model-function", lambda: convert(torch.relu, X), TypeError, "model must be .* got builtin_function_or_method"),
    ("unsupported-layer-named", lambda: convert(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()), X),
     ConversionError, r"layer '1' \(Tanh\) at position 2 of 4 cannot be converted; supported layers:"),
    ("coding-none", lambda: convert(_mlp(), X, coding=None), ValueError,
     r"unknown coding None; expected one of \['asn', 'qcfs', 'rate', 'ttfs', 'ttfs-clamped', 'ttfs-dynamic'\]"),
    ("coding-case", lambda: convert(_mlp(), X, coding="Rate"), ValueError, "unknown coding 'Rate'; expected one of"),
    ("normalization-unknown", lambda: convert(_mlp(), X, normalization="mean"), ValueError,
     r"unknown normalization 'mean'; expected one of \['max', 'percentile'\]"),
    ("percentile-above-100", lambda: convert(_mlp(), X, percentile=101), ValueError,
     r"percentile must be in \(0, 100\] \(a number\), got 101"),
    ("percentile-nan", lambda: convert(_mlp(), X, percentile=NAN), ValueError, r"percentile must be in \(0, 100\].*got nan"),
    ("percentile-str", lambda: convert(_mlp(), X, percentile="99"), ValueError, r"percentile must be in \(0, 100\].*got '99'"),
    ("max-samples-0", lambda: convert(_mlp(), X, max_samples=0), ValueError, "max_samples must be an int >= 1, got 0"),
    ("max-samples-float", lambda: convert(_mlp(), X, max_samples=2.5), ValueError, "max_samples must be an int >= 1, got 2.5"),
    ("per-channel-str", lambda: convert(_mlp(), X, per_channel="no"), ValueError, "per_channel must be True or False, got 'no'"),
    ("option-unknown", lambda: convert(_mlp(), X, bogus=3), ValueError,
     "coding 'rate' takes no option 'bogus'; its options: initial_membrane, fold_scales"),
    ("option-of-another-coding", lambda: convert(_mlp(), X, coding="ttfs", window=4), ValueError,
     "coding 'ttfs' takes no option 'window'; its options: fold_scales"),
    ("initial-membrane-1", lambda: convert(_mlp(), X, initial_membrane=1.0), ValueError,
     r"initial_membrane must be a number in \[0, 1\), got 1.0"),
    ("initial-membrane-nan", lambda: convert(_mlp(), X, initial_membrane=NAN), ValueError,
     r"initial_membrane must be a number in \[0, 1\), got nan"),
    ("window-0", lambda: convert(_mlp(), X, coding="ttfs-dynamic", window=0), ValueError,
     "window must be an integer >= 1, got 0"),
    # NaN / Inf weights poison every spike: refused, naming the parameter
    ("weight-nan", lambda: convert(_with(NAN, 1, "weight", (0, 0)), X), ValueError,
     r"parameter 1.weight of shape \(8, 4\) holds 1 NaN and 0 Inf values; expected finite weights"),
    ("bias-inf", lambda: convert(_with(INF, 3, "bias", (0,)), X), ValueError,
     r"parameter 3.bias of shape \(3,\) holds 0 NaN and 1 Inf values"),
    ("batchnorm-stat-nan", lambda: convert(_bn_with_nan_mean(), X), ValueError,
     r"parameter 1.running_mean of shape \(8,\) holds 1 NaN"),
    ("batchnorm-negative-variance", lambda: convert(_bn_with_negative_var(), X), ValueError,
     r"parameter 1.running_var must be >= 0 \(a variance\), got min -0.5"),
    ("weight-nan-clamped-coding", lambda: convert(clamp_activations(_with(NAN, 1, "weight", (0, 0))), coding="ttfs-clamped"),
     ValueError, "parameter 1.weight .* holds 1 NaN"),
    # calibration data
    ("data-wrong-features", lambda: convert(_mlp(), torch.rand(20, 5)), ValueError,
     r"calibration data of shape \(20, 5\) and dtype torch.float32 does not fit the model: layer '1' \(Linear\)"),
    ("data-no-batch-axis", lambda: convert(_mlp(), torch.rand(4)), ValueError,
     r"calibration data must be a batch \[N, \*input\] \(at least 2 dims\), got shape \(4,\)"),
    ("data-scalar", lambda: convert(_mlp(), torch.tensor(1.0)), ValueError,
     r"calibration data must be a batch \[N, \*input\].*got shape \(\)"),
    ("data-empty", lambda: convert(_mlp(), torch.rand(0, 4)), ConversionError,
     r"the calibration data is empty: got 0 samples, expected at least one \[N >= 1, \*input\]"),
    ("data-empty-iterable", lambda: convert(_mlp(), []), ConversionError, "the calibration data is empty: got 0 samples"),
    ("data-nan", lambda: convert(_mlp(), torch.cat([X, torch.full((1, 4), NAN)])), ValueError,
     r"calibration data must be finite, got NaN or Inf in sample 20 \(4 NaN, 0 Inf in its batch\)"),
    ("data-inf", lambda: convert(_mlp(), torch.cat([torch.full((1, 4), INF), X])), ValueError,
     r"calibration data must be finite, got NaN or Inf in sample 0 \(0 NaN, 4 Inf"),
    ("data-complex", lambda: convert(_mlp(), X.to(torch.complex64)), TypeError,
     "calibration data must be real .* got dtype torch.complex64"),
    ("data-numpy", lambda: convert(_mlp(), X.numpy()), TypeError,
     "calibration data must yield tensors or \\(x, y\\) pairs, got ndarray"),
    ("data-int-scalar", lambda: convert(_mlp(), 3), TypeError,
     r"calibration data must be a tensor \[N, \*input\] or an iterable of batches, got int"),
    ("data-string", lambda: convert(_mlp(), "images.pt"), TypeError,
     "calibration data must be a tensor .* or an iterable of batches, got str"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CONVERT_CASES], ids=[c[0] for c in CONVERT_CASES])
def test_convert_refuses(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- calibrate, trace, builders
def _graph():
    return trace(_mlp())


CALIBRATE_CASES = [
    ("graph-none", lambda: calibrate(None, X), TypeError,
     r"graph must be a LayerGraph \(from spikeflow.convert.trace\), got NoneType"),
    ("graph-module", lambda: calibrate(_mlp(), X), TypeError, "graph must be a LayerGraph .* got Sequential"),
    ("method-unknown", lambda: calibrate(_graph(), X, method="p99"), ValueError,
     r"unknown normalization 'p99'; expected one of \['max', 'percentile'\]"),
    ("batch-wrong-features", lambda: calibrate(_graph(), [(torch.rand(3, 5), torch.zeros(3))]), ValueError,
     r"calibration data of shape \(3, 5\) .* does not fit the model: layer '1' \(Linear\) at position 2 of 6 got \(3, 5\)"),
    ("batch-not-a-tensor", lambda: calibrate(_graph(), [["a"]]), TypeError,
     "calibration data must yield tensors or \\(x, y\\) pairs, got str"),
    ("only-empty-batches", lambda: calibrate(_graph(), [torch.rand(0, 4), torch.rand(0, 4)]), ConversionError,
     "the calibration data is empty"),
    ("batch-nan-position", lambda: calibrate(_graph(), [X[:3], torch.full((2, 4), NAN)]), ValueError,
     "calibration data must be finite, got NaN or Inf in sample 3"),
    ("graph-weight-nan", lambda: calibrate(trace(_with(NAN, 3, "weight", (1, 2))), X), ValueError,
     r"parameter 3.weight of shape \(3, 8\) holds 1 NaN"),
    ("trace-input-shape-str", lambda: trace(_mlp(), input_shape="abc"), ValueError,
     "input_shape must be a tuple of positive ints \\(one sample, no batch\\), got 'abc'"),
    ("trace-input-shape-negative", lambda: trace(_mlp(), input_shape=(-1, 4)), ValueError,
     r"input_shape must be a tuple of positive ints .* got \(-1, 4\)"),
    ("trace-not-a-module", lambda: trace([1, 2]), TypeError, "model must be a torch.nn.Module or a LayerGraph, got list"),
    ("rate-network-no-calibration", lambda: rate_network(_graph(), None), TypeError,
     r"rate_network: calibration must be a Calibration \(from spikeflow.convert.calibrate\), got NoneType"),
    ("rate-network-module", lambda: rate_network(_mlp(), None), TypeError,
     "rate_network: graph must be a LayerGraph .* got Sequential"),
    ("ttfs-network-dict", lambda: ttfs_network(_graph(), {"2": torch.tensor(1.0)}), TypeError,
     "ttfs_network: calibration must be a Calibration .* got dict"),
    ("ttfs-dynamic-no-calibration", lambda: ttfs_dynamic_network(_graph(), None), TypeError,
     "ttfs_dynamic_network: calibration must be a Calibration"),
    ("ttfs-clamped-wrong-calibration", lambda: ttfs_clamped_network(_graph(), "max"), TypeError,
     "ttfs_clamped_network: calibration must be a Calibration .* or None, got str"),
    ("asn-network-module", lambda: asn_network(_mlp()), TypeError, "asn_network: graph must be a LayerGraph"),
    ("to-spiking-module", lambda: to_spiking(_mlp(), {}, lambda n, s: [], lambda n: None), TypeError,
     "graph must be a LayerGraph .* got Sequential"),
    ("to-spiking-scales-list", lambda: to_spiking(_graph(), [1.0], lambda n, s: [], lambda n: None), TypeError,
     r"scales must be a dict \{activation node: scale\} \(Calibration.scales\), got list"),
    ("to-spiking-neuron-not-callable", lambda: to_spiking(_graph(), {}, "IF", lambda n: None), TypeError,
     r"neuron must be callable \(node -> module\), got str"),
    ("finalize-module", lambda: finalize(_mlp()), TypeError, "net must be a SpikingNetwork, got Sequential"),
    ("options-direct", lambda: check_calibration_options(99.0, True, True), ValueError,
     "max_samples must be an int >= 1, got True"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CALIBRATE_CASES], ids=[c[0] for c in CALIBRATE_CASES])
def test_calibration_and_builders_refuse(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- simulate and the network's forward
SIMULATE_CASES = [
    ("timesteps-float", dict(timesteps=8.0), ValueError, "timesteps must be positive integers, got 8.0"),
    ("timesteps-none", dict(timesteps=None), ValueError, "timesteps must be positive integers, got None"),
    ("timesteps-str", dict(timesteps="8"), ValueError, "timesteps must be positive integers, got '8'"),
    ("timesteps-empty", dict(timesteps=[]), ValueError, r"timesteps must be positive integers, got \[\]"),
    ("timesteps-bool", dict(timesteps=[True, 4]), ValueError, r"timesteps must be positive integers, got \[True, 4\]"),
    ("timesteps-negative", dict(timesteps=(4, -1)), ValueError, r"timesteps must be positive integers, got \(4, -1\)"),
    ("chunk-0", dict(chunk=0), ValueError, "chunk must be an int >= 1 or None, got 0"),
    ("chunk-float", dict(chunk=2.5), ValueError, "chunk must be an int >= 1 or None, got 2.5"),
    ("x-list", dict(x=[[0.1] * 4]), TypeError, r"x must be a torch.Tensor \[B, \*input\], got list"),
    ("x-int", dict(x=torch.ones(5, 4, dtype=torch.long)), TypeError,
     r"x must be a floating-point tensor, got dtype torch.int64; convert it with .float\(\)"),
    ("x-no-batch-axis", dict(x=torch.rand(4)), ValueError,
     r"x must be a batch \[B, \*input\] \(at least 2 dims\), got shape \(4,\); add the batch axis"),
    ("x-empty", dict(x=torch.rand(0, 4)), ValueError, r"x has no samples \(shape \(0, 4\)\); expected B >= 1"),
    ("x-nan", dict(x=torch.full((5, 4), NAN)), ValueError, "x must be finite, got 20 NaN and 0 Inf values"),
    ("x-wrong-features", dict(x=torch.rand(5, 5)), ValueError,
     r"SpikingNetwork input of shape \(4, 5, 5\) does not fit layer '1' \(TimeDistributed\)"),
]


@pytest.mark.parametrize("changes,error,match", [c[1:] for c in SIMULATE_CASES], ids=[c[0] for c in SIMULATE_CASES])
def test_simulate_refuses(net, changes, error, match):
    args = {"x": torch.rand(5, 4), "timesteps": 4, **changes}
    with pytest.raises(error, match=match):
        simulate(net, **args)


def test_simulate_needs_a_spiking_network():
    with pytest.raises(TypeError, match=r"net must be a SpikingNetwork \(from spikeflow.convert.convert\), got Sequential"):
        simulate(_mlp(), torch.rand(5, 4), 4)


FORWARD_CASES = [
    ("int-input", lambda n: n(torch.ones(2, 5, 4, dtype=torch.long)), TypeError,
     r"SpikingNetwork input must be a floating-point tensor \[T, B, \.\.\.\], got dtype torch.int64"),
    ("double-input", lambda n: n(torch.rand(2, 5, 4, dtype=torch.float64)), TypeError,
     "SpikingNetwork input has dtype torch.float64 but the network's weights are torch.float32"),
    ("list-input", lambda n: n([[1.0]]), TypeError, r"SpikingNetwork expects a torch.Tensor of shape \[T, B, \.\.\.\], got list"),
    ("no-time-axis", lambda n: n(torch.rand(4)), ValueError, r"SpikingNetwork expects a time-major input \[T, B, \.\.\.\]"),
    ("wrong-features", lambda n: n(torch.rand(2, 5, 6)), ValueError,
     r"SpikingNetwork input of shape \(2, 5, 6\) does not fit layer '1'"),
    ("state-list", lambda n: n(torch.rand(2, 5, 4), [None]), TypeError,
     r"SpikingNetwork state must be a dict \{layer name: state\} .* got list"),
    ("state-unknown-layer", lambda n: n(torch.rand(2, 5, 4), {"nope": None}), ValueError,
     r"SpikingNetwork state has entries for \['nope'\], which are not stateful layers of this network; expected keys among \['2'\]"),
    ("state-other-batch", lambda n: n(torch.rand(2, 5, 4), n(torch.rand(2, 3, 4))[1]), ValueError,
     r"state.v has shape \(3, 8\) but the input's \[B, \*features\] is \(5, 8\)"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in FORWARD_CASES], ids=[c[0] for c in FORWARD_CASES])
def test_spiking_network_forward_refuses(net, call, error, match):
    with pytest.raises(error, match=match):
        call(net)


def test_a_refused_input_leaves_the_network_usable(net):
    with pytest.raises(ValueError):
        net(torch.rand(2, 5, 6))
    out, _ = net(torch.rand(2, 5, 4))
    assert out.shape == (2, 5, 3) and bool(torch.isfinite(out).all())


# ----------------------------------------------------------------------------- evaluate_conversion
EVALUATE_CASES = [
    ("labels-strings", dict(labels=["a"] * 20), ValueError, r"labels must be integer class indices \[N\], got list"),
    ("labels-2d", dict(labels=torch.zeros(20, 1, dtype=torch.long)), ValueError,
     r"labels must be integer class indices \[N\], got torch.int64 \(20, 1\)"),
    ("labels-bool", dict(labels=torch.zeros(20, dtype=torch.bool)), ValueError,
     "labels must be integer class indices .* got torch.bool"),
    ("labels-negative", dict(labels=torch.full((20,), -1)), ValueError, "labels must be class indices >= 0, got -1"),
    ("labels-beyond-classes", dict(labels=torch.full((20,), 7)), ValueError,
     r"labels must be class indices in \[0, 3\) for the ANN's 3 outputs, got 7"),
    ("images-nan", dict(images=torch.full((20, 4), NAN)), ValueError, "images must be finite, got 80 NaN"),
    ("images-wrong-features", dict(images=torch.rand(20, 5)), ValueError,
     r"images of shape \(20, 5\) do not fit the ANN: mat1 and mat2"),
    ("images-one-dim", dict(images=torch.rand(20)), ValueError,
     r"images must be a floating-point tensor \[N, \.\.\.\], got torch.float32 \(20,\)"),
    ("images-empty", dict(images=torch.rand(0, 4), labels=torch.zeros(0, dtype=torch.long)), ValueError,
     "no samples to evaluate"),
    ("batch-size-float", dict(batch_size=2.0), ValueError, "batch_size must be a positive integer, got 2.0"),
    ("chunk-0", dict(chunk=0), ValueError, "chunk must be an int >= 1 or None, got 0"),
    ("timesteps-float", dict(timesteps=4.5), ValueError, "timesteps must be positive integers, got 4.5"),
    ("e-mac-negative", dict(e_mac=-1.0), ValueError, r"e_mac \(joules per operation\) must be a finite number >= 0, got -1.0"),
    ("e-ac-nan", dict(e_ac=NAN), ValueError, r"e_ac \(joules per operation\) must be a finite number >= 0, got nan"),
    ("ann-str", dict(ann="lenet5"), TypeError, "ann must be a torch.nn.Module or a LayerGraph, got str"),
]


@pytest.mark.parametrize("changes,error,match", [c[1:] for c in EVALUATE_CASES], ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_conversion_refuses(net, changes, error, match):
    args = {"ann": _mlp(), "snn": net, "images": X, "labels": LABELS, "timesteps": [4], **changes}
    with pytest.raises(error, match=match):
        evaluate_conversion(**args)


def test_evaluate_with_a_layer_graph_names_the_images():
    graph = trace(_mlp())
    net = convert(graph, X)
    with pytest.raises(ValueError, match=r"images of shape \(20, 5\) and dtype torch.float32 does not fit the model: layer '1'"):
        evaluate_conversion(graph, net, torch.rand(20, 5), LABELS, [4])


# ----------------------------------------------------------------------------- QCFS, ASN, TTFS helpers, presets, layers
OTHER_CASES = [
    ("qcfs-scale-inf", lambda: QCFS(scale=INF), ValueError, "scale must be a finite number > 0, got inf"),
    ("qcfs-scale-str", lambda: QCFS(scale="8"), ValueError, "scale must be a finite number > 0, got '8'"),
    ("qcfs-levels-float", lambda: QCFS(levels=2.5), ValueError, "levels must be a positive integer, got 2.5"),
    ("qcfs-model-not-a-module", lambda: qcfs_model("model.pt"), TypeError, "model must be a torch.nn.Module, got str"),
    ("qcfs-model-levels-checked-first", lambda: qcfs_model(_mlp(), levels=True), ValueError,
     "levels must be a positive integer, got True"),
    ("asn-model-not-a-module", lambda: asn_model(None), TypeError, "model must be a torch.nn.Module, got NoneType"),
    ("asn-model-unknown-parameter", lambda: asn_model(_mlp(), tau=2.0), TypeError,
     r"unknown ASNActivation parameter 'tau'; expected some of \['tau_phi', 'tau_gamma'"),
    ("asn-h-nan", lambda: ASNActivation(h=NAN), ValueError, "h must be finite, got nan"),
    ("asn-model-m_f-negative", lambda: asn_model(_mlp(), m_f=-1.0), ValueError, "m_f must be >= 0, got -1.0"),
    ("clamp-maximum-inf", lambda: clamp_activations(_mlp(), INF), ValueError,
     "maximum must be a finite number > 0, got inf"),
    ("clamp-not-a-module", lambda: clamp_activations("m"), TypeError, "clamp_activations expects a torch.nn.Module, got str"),
    ("preset-unknown-lists-them", lambda: get_preset("lenet"), ValueError,
     r"unknown conversion preset 'lenet'; expected one of \['lenet5', 'resnet18', 'seed002', 'vgg'\]"),
    ("build-ann-unknown-preset", lambda: build_ann("alexnet", (1, 8, 8), 10), ValueError,
     "unknown conversion preset 'alexnet'; expected one of"),
    ("load-images-unknown-dataset", lambda: load_images(None), ValueError,
     r"unknown data set None; expected one of \['digits', 'mnist'\]"),
    ("lenet5-classes-0", lambda: lenet5((1, 28, 28), 0), ValueError, "classes must be an int >= 1, got 0"),
    ("lenet5-input-too-small", lambda: lenet5((1, 2, 2), 10), ValueError,
     r"input_shape \(1, 2, 2\) is too small for this architecture: Given input size"),
    ("vgg-input-too-small", lambda: vgg((1, 2, 2), 10), ValueError, r"input_shape \(1, 2, 2\) is too small"),
    ("seed002-input-shape-str", lambda: seed002_net("1x28x28", 10), ValueError,
     r"input_shape must be \(channels, height, width\) of positive ints, got '1x28x28'"),
    ("resnet-width-0", lambda: resnet18((3, 32, 32), 10, width=0), ValueError, "width must be an int >= 1, got 0"),
    ("activation-not-callable", lambda: lenet5((1, 28, 28), 10, activation="relu"), TypeError,
     r"activation must be a callable that makes a module \(such as torch.nn.ReLU\), got 'relu'"),
    ("scale-nan", lambda: Scale(torch.tensor([1.0, NAN])), ValueError,
     r"scale must be finite, 0-d \(per layer\) or \[C\] \(per channel\), got tensor\(\[1., nan\]\)"),
    ("scale-str", lambda: Scale("2"), TypeError, "scale must be a number or a tensor, got str"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_conversion_helpers_refuse(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "settings,pattern",
    [
        ({"input_shape": [1, 100000, 100000], "classes": 10}, r"it takes inputs of shape \(1, 100000, 100000\), but the digits data has \(1, 8, 8\)"),
        ({"input_shape": [1, 8, 8], "classes": 10**9}, r"it has 1000000000 outputs; the digits data has 10 classes"),
    ],
    ids=["huge-input", "huge-classes"],
)
def test_a_saved_ann_is_checked_against_the_data_before_it_is_built(tmp_path, settings, pattern):
    """A stranger's ANN file names its own input shape and classes: an enormous network
    is refused before it is built (the weights alone would not bound it)."""
    from spikeflow.convert.ann import save_ann
    from spikeflow.convert.experiment import ConvertConfig, run_experiment
    from spikeflow.train.checkpoint import CheckpointError

    path = tmp_path / "ann.pt"
    save_ann(path, torch.nn.Linear(1, 1), preset="lenet5", **settings)
    config = ConvertConfig(model=str(path), preset="lenet5", quiet=True, plot=False, out=str(tmp_path / "out"))
    with pytest.raises(CheckpointError, match=pattern):
        run_experiment(config)
