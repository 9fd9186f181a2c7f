"""Importing ONNX models (spikeflow.convert.onnx.load_onnx).

Every ONNX model here is built with ``onnx.helper`` to mirror a small torch model with
the same weights (Keras-style Dense layers, a CNN, a residual block, channels-last
inputs), and checked against it; then the imported graph goes through the conversion
pipeline.
"""

from __future__ import annotations

import io
import re
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from spikeflow.convert import (  # noqa: E402
    ConversionError,
    Kind,
    SpikingNetwork,
    calibrate,
    convert,
    fold_batchnorm,
    rate_network,
    simulate,
)
from spikeflow.convert.onnx import load_onnx  # noqa: E402


# -- building ONNX models ----------------------------------------------------------------
def _array(t) -> np.ndarray:
    return (t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)).astype(np.float32)


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(_array(value), name)


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _model(nodes, inits, in_shape, out_shape=None, *, opset: int = 17, inputs=None, outputs=None) -> onnx.ModelProto:
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)]
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)  # the test models are valid ONNX
    return model


def _bn_inits(prefix: str, bn: torch.nn.modules.batchnorm._BatchNorm) -> list:
    return [_init(f"{prefix}.{k}", v) for k, v in
            (("g", bn.weight), ("b", bn.bias), ("m", bn.running_mean), ("v", bn.running_var))]


def _bn_node(prefix: str, x: str, out: str, bn) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{k}" for k in "gbmv"], [out],
                            name=prefix, epsilon=bn.eps)


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


def _mlp():
    """A Keras-style MLP: Dense = MatMul + Add, then Softmax."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    fc1, fc2 = model[0], model[2]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="dense/MatMul"),
        helper.make_node("Add", ["h1", "b1"], ["h2"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["h2"], ["h3"], name="dense/Relu"),
        helper.make_node("Dropout", ["h3"], ["h4"], name="dropout"),
        helper.make_node("MatMul", ["h4", "w2"], ["h5"], name="dense_1/MatMul"),
        helper.make_node("Add", ["h5", "b2"], ["logits"], name="dense_1/BiasAdd"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    inits = [_init("w1", fc1.weight.T), _init("b1", fc1.bias), _init("w2", fc2.weight.T), _init("b2", fc2.bias)]
    return model, _model(nodes, inits, ["N", 6], ["N", 4])


def _cnn():
    """Conv + BatchNormalization + Relu + MaxPool + Flatten + Gemm on 1 x 8 x 8."""
    torch.manual_seed(1)
    model = _randomize_bn(torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5),
    ))
    conv, bn, fc = model[0], model[1], model[5]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        _bn_node("bn", "c", "n", bn),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Identity", ["p"], ["i"], name="identity"),
        helper.make_node("Flatten", ["i"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("cw", conv.weight), _init("cb", conv.bias), *_bn_inits("bn", bn),
             _init("fw", fc.weight), _init("fb", fc.bias)]
    return model, _model(nodes, inits, ["N", 1, 8, 8], ["N", 5])


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.a = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.b = torch.nn.Conv2d(4, 2, 1)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.bn(self.a(h)) + h)
        h = torch.cat([h, torch.clamp(self.b(h), 0, 1.5)], dim=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _residual():
    """Residual Add, Clip(0, 1.5), Concat, GlobalAveragePool."""
    torch.manual_seed(2)
    model = _randomize_bn(_Residual())
    nodes = [
        helper.make_node("Conv", ["x", "sw", "sb"], ["s"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["h"], name="stem_relu"),
        helper.make_node("Conv", ["h", "aw"], ["a"], name="a", pads=[1, 1, 1, 1]),
        _bn_node("bn", "a", "an", model.bn),
        helper.make_node("Add", ["an", "h"], ["sum"], name="residual"),
        helper.make_node("Relu", ["sum"], ["h2"], name="block_relu"),
        helper.make_node("Conv", ["h2", "bw", "bb"], ["b"], name="b"),
        helper.make_node("Clip", ["b", "zero", "top"], ["bc"], name="clip"),
        helper.make_node("Concat", ["h2", "bc"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("sw", model.stem.weight), _init("sb", model.stem.bias), _init("aw", model.a.weight),
        *_bn_inits("bn", model.bn), _init("bw", model.b.weight), _init("bb", model.b.bias),
        _init("zero", 0.0), _init("top", 1.5), _init("fw", model.fc.weight), _init("fb", model.fc.bias),
    ]
    return model, _model(nodes, inits, ["N", 2, 6, 6], ["N", 3])


# -- the graph runs as the model it mirrors ----------------------------------------------
@torch.no_grad()
def test_keras_dense_mlp_matmul_add_is_a_linear_with_bias_and_softmax_is_dropped():
    model, proto = _mlp()
    graph = load_onnx(proto)
    assert [n.kind for n in graph] == [Kind.INPUT, Kind.LINEAR, Kind.RELU, Kind.LINEAR, Kind.OUTPUT]
    assert graph.input_shape == (6,)
    x = torch.randn(7, 6)
    torch.testing.assert_close(graph.run(x), model(x))  # the logits: Softmax dropped


@torch.no_grad()
def test_cnn_from_a_file_conv_batchnorm_relu_maxpool_flatten_gemm(tmp_path):
    model, proto = _cnn()
    path = tmp_path / "cnn.onnx"
    onnx.save(proto, str(path))
    graph = load_onnx(path)
    assert [n.kind for n in graph] == [
        Kind.INPUT, Kind.CONV, Kind.BATCHNORM, Kind.RELU, Kind.MAXPOOL, Kind.FLATTEN, Kind.LINEAR, Kind.OUTPUT,
    ]  # Identity removed
    bn = graph["bn"].module
    assert isinstance(bn, torch.nn.BatchNorm2d)
    torch.testing.assert_close(bn.running_var, model[1].running_var)
    assert graph.input_shape == (1, 8, 8)
    x = torch.randn(6, 1, 8, 8)
    torch.testing.assert_close(graph.run(x), model(x))
    torch.testing.assert_close(fold_batchnorm(graph).run(x), model(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_residual_add_concat_clip_and_global_average_pool():
    model, proto = _residual()
    graph = load_onnx(proto)
    kinds = [n.kind for n in graph]
    assert Kind.ADD in kinds and Kind.CAT in kinds
    assert graph["clip"].kind is Kind.RELU and graph["clip"].attrs == {"max": 1.5}
    assert graph["cat"].attrs == {"dim": 1}
    assert isinstance(graph["gap"].module, torch.nn.AdaptiveAvgPool2d)
    x = torch.randn(4, 2, 6, 6)
    torch.testing.assert_close(graph.run(x), model(x))


@torch.no_grad()
def test_keras_channels_last_cnn_input_transpose_is_recorded_and_flatten_order_folded():
    # Keras: NHWC input -> Transpose to NCHW -> Conv (SAME) -> Relu -> AveragePool
    # -> Transpose back to NHWC -> Reshape(-1, H*W*C) -> Dense (MatMul + Add)
    g = torch.Generator().manual_seed(4)
    w, b = torch.randn(3, 2, 3, 3, generator=g), torch.randn(3, generator=g)
    dw, db = torch.randn(27, 4, generator=g), torch.randn(4, generator=g)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w", "b"], ["c"], name="conv", auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["pt"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["pt", "shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "dw"], ["m"], name="dense/MatMul"),
        helper.make_node("Add", ["m", "db"], ["y"], name="dense/BiasAdd"),
    ]
    inits = [_init("w", w), _init("b", b), _ints("shape", [-1, 27]), _init("dw", dw), _init("db", db)]
    graph = load_onnx(_model(nodes, inits, ["N", 6, 6, 2], ["N", 4]))

    x_nhwc = torch.randn(5, 6, 6, 2)
    h = F.avg_pool2d(torch.relu(F.conv2d(x_nhwc.permute(0, 3, 1, 2), w, b, padding=1)), 2)
    reference = h.permute(0, 2, 3, 1).reshape(5, -1) @ dw + db  # what the ONNX model computes

    assert graph.nodes[0].attrs == {"layout": "NHWC", "permute": (0, 3, 1, 2)}
    assert graph.input_shape == (2, 6, 6)  # channels first
    assert [n.kind for n in graph] == [Kind.INPUT, Kind.CONV, Kind.RELU, Kind.AVGPOOL, Kind.FLATTEN, Kind.LINEAR,
                                       Kind.OUTPUT]
    torch.testing.assert_close(graph.run(x_nhwc.permute(*graph.nodes[0].attrs["permute"])), reference)


@torch.no_grad()
def test_keras_channels_last_global_average_pool_and_dynamic_flatten():
    # ReduceMean over the NHWC spatial axes (Keras GlobalAveragePooling2D) and a
    # flatten whose target is Shape(x)[0:1] ++ [-1] (Keras Flatten with a free batch)
    g = torch.Generator().manual_seed(10)
    w, b = torch.randn(3, 2, 3, 3, generator=g), torch.randn(3, generator=g)
    dw, db = torch.randn(3 + 12, 4, generator=g), torch.randn(4, generator=g)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["rt"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["rt"], ["gap"], name="gap", axes=[1, 2], keepdims=0),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["pt"], name="pool_to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["pt"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "zero", "one"], ["n"], name="batch"),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["pt", "target"], ["flat"], name="flatten"),
        helper.make_node("Concat", ["gap", "flat"], ["both"], name="cat", axis=1),
        helper.make_node("MatMul", ["both", "dw"], ["m"], name="dense/MatMul"),
        helper.make_node("Add", ["m", "db"], ["y"], name="dense/BiasAdd"),
    ]
    inits = [_init("w", w), _init("b", b), _ints("zero", [0]), _ints("one", [1]), _ints("minus_one", [-1]),
             _init("dw", dw), _init("db", db)]
    proto = _model(nodes, inits, ["N", 4, 4, 2], ["N", 4], opset=13)
    with pytest.raises(ConversionError, match=r"'cat' \(Concat\) at position 11 of 14 reads a flattened channels-last"):
        load_onnx(proto)  # the reordered columns cannot go through a concatenation

    # without the concatenation: Dense on the pooled features, Dense on the flattened map
    proto.graph.node[11].CopyFrom(helper.make_node("Identity", ["flat"], ["both"], name="skip"))
    proto.graph.initializer[5].CopyFrom(_init("dw", dw[3:]))
    graph = load_onnx(proto)
    x_nhwc = torch.randn(3, 4, 4, 2)
    r = torch.relu(F.conv2d(x_nhwc.permute(0, 3, 1, 2), w, b, padding=1))
    flat = F.max_pool2d(r, 2).permute(0, 2, 3, 1).reshape(3, -1)
    torch.testing.assert_close(graph.run(x_nhwc.permute(0, 3, 1, 2)), flat @ dw[3:] + db)
    assert "gap" not in [n.name for n in graph]  # the unused branch is pruned

    # the pooled branch alone
    proto.graph.node[11].CopyFrom(helper.make_node("Identity", ["gap"], ["both"], name="skip"))
    proto.graph.initializer[5].CopyFrom(_init("dw", dw[:3]))
    graph = load_onnx(proto)
    assert [n.kind for n in graph] == [Kind.INPUT, Kind.CONV, Kind.RELU, Kind.AVGPOOL, Kind.FLATTEN, Kind.LINEAR,
                                       Kind.OUTPUT]
    torch.testing.assert_close(graph.run(x_nhwc.permute(0, 3, 1, 2)), r.mean((2, 3)) @ dw[:3] + db)


@torch.no_grad()
def test_gemm_alpha_beta_and_untransposed_weight():
    g = torch.Generator().manual_seed(5)
    b, c = torch.randn(5, 3, generator=g), torch.randn(1, 3, generator=g)
    node = helper.make_node("Gemm", ["x", "b", "c"], ["y"], name="gemm", alpha=0.5, beta=2.0, transB=0)
    graph = load_onnx(_model([node], [_init("b", b), _init("c", c)], ["N", 5], ["N", 3]))
    x = torch.randn(4, 5)
    torch.testing.assert_close(graph.run(x), 0.5 * x @ b + 2.0 * c)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@torch.no_grad()
def test_average_pool_keeps_count_include_pad(count_include_pad):
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], count_include_pad=count_include_pad)
    graph = load_onnx(_model([node], [], ["N", 2, 5, 5], ["N", 2, 3, 3]))
    x = torch.rand(3, 2, 5, 5) + 1.0  # positive: the two conventions differ at the borders
    expected = F.avg_pool2d(x, 3, 2, 1, count_include_pad=bool(count_include_pad))
    other = F.avg_pool2d(x, 3, 2, 1, count_include_pad=not count_include_pad)
    assert not torch.allclose(expected, other)
    torch.testing.assert_close(graph.run(x), expected)


@torch.no_grad()
def test_conv1d_batchnorm1d_maxpool1d_and_global_average_pool_1d():
    torch.manual_seed(6)
    conv, bn, fc = torch.nn.Conv1d(2, 3, 3, padding=1), _randomize_bn(torch.nn.BatchNorm1d(3)), torch.nn.Linear(3, 2)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1]),
        _bn_node("bn", "c", "n", bn),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2], strides=[2]),
        helper.make_node("GlobalAveragePool", ["p"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("cw", conv.weight), _init("cb", conv.bias), *_bn_inits("bn", bn),
             _init("fw", fc.weight), _init("fb", fc.bias)]
    graph = load_onnx(_model(nodes, inits, ["N", 2, 10], ["N", 2]))
    assert isinstance(graph["conv"].module, torch.nn.Conv1d) and isinstance(graph["bn"].module, torch.nn.BatchNorm1d)
    x = torch.randn(4, 2, 10)
    expected = fc(F.max_pool1d(torch.relu(bn(conv(x))), 2).mean(2))
    torch.testing.assert_close(graph.run(x), expected)


@torch.no_grad()
def test_depthwise_conv_and_keras_reduce_mean_global_pool():
    torch.manual_seed(7)
    conv, fc = torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Linear(4, 2)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="depthwise", group=4, auto_pad="VALID"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r"], ["m"], name="gap", axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("cw", conv.weight), _init("cb", conv.bias), _init("fw", fc.weight), _init("fb", fc.bias)]
    graph = load_onnx(_model(nodes, inits, ["N", 4, 6, 6], ["N", 2], opset=13))
    assert graph["depthwise"].module.groups == 4
    x = torch.randn(3, 4, 6, 6)
    torch.testing.assert_close(graph.run(x), fc(torch.relu(conv(x)).mean((2, 3))))


@torch.no_grad()
def test_clip_with_attributes_in_old_opsets_and_a_reshape_computed_from_shape():
    # opset 10: Clip's bounds are attributes; the flatten target is Shape(x)[0] ++ [-1]
    g = torch.Generator().manual_seed(8)
    w = torch.randn(3, 12, generator=g)
    nodes = [
        helper.make_node("Clip", ["x"], ["c"], name="relu6", min=0.0, max=6.0),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsqueeze", axes=[0]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1),
    ]
    inits = [_ints("zero", 0), _ints("minus_one", [-1]), _init("w", w), _init("b", np.zeros(3))]
    graph = load_onnx(_model(nodes, inits, ["N", 3, 2, 2], ["N", 3], opset=10))
    assert graph["relu6"].attrs == {"max": 6.0}
    assert [n.kind for n in graph] == [Kind.INPUT, Kind.RELU, Kind.FLATTEN, Kind.LINEAR, Kind.OUTPUT]
    x = torch.randn(4, 3, 2, 2) * 5
    torch.testing.assert_close(graph.run(x), x.clamp(0, 6).flatten(1) @ w.T)


# -- the conversion pipeline on an imported graph ----------------------------------------
@torch.no_grad()
def test_imported_graph_converts_like_the_torch_model_and_approaches_the_ann(tmp_path):
    model, proto = _cnn()
    graph = fold_batchnorm(load_onnx(proto))
    data = torch.rand(32, 1, 8, 8)
    net = rate_network(graph, calibrate(graph, data, method="max"))
    steps, _ = net(data[:3].unsqueeze(0).expand(4, 3, 1, 8, 8))
    assert steps.shape == (4, 3, 5)

    ann = model(data)
    outputs = simulate(net, data, [16, 256])
    agree = (outputs[256].argmax(1) == ann.argmax(1)).float().mean().item()
    assert agree >= 0.9
    assert (outputs[256] - ann).abs().mean() < (outputs[16] - ann).abs().mean()

    # the same spiking network as converting the torch model itself
    direct = convert(model, data, normalization="max")
    imported = convert(load_onnx(proto), data, normalization="max")
    torch.testing.assert_close(simulate(imported, data, 32)[32], simulate(direct, data, 32)[32])

    # and it saves and loads like any converted network
    loaded = SpikingNetwork.load(net.save(tmp_path / "net.pt"))
    torch.testing.assert_close(simulate(loaded, data[:4], 8)[8], simulate(net, data[:4], 8)[8])


@torch.no_grad()
def test_residual_onnx_graph_converts_per_channel():
    model, proto = _residual()
    graph = fold_batchnorm(load_onnx(proto))
    x = torch.rand(16, 2, 6, 6)
    net = rate_network(graph, calibrate(graph, x, method="max", per_channel=True))
    out = simulate(net, x, [256])[256]
    ann = model(x)
    assert out.shape == ann.shape
    assert (out - ann).abs().mean() < 0.05 * ann.abs().mean() + 1e-3


class _Exported(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = torch.nn.BatchNorm2d(4)
        self.c2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 2 * 2 * 2, 6)
        self.out = torch.nn.Linear(6, 3)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        h = torch.cat([h, F.relu6(self.c2(h)) + h], dim=1)
        h = F.avg_pool2d(h, 2)
        h = h.view(h.size(0), -1)
        return torch.softmax(self.out(torch.relu(self.fc(h))), dim=1)


@torch.no_grad()
def test_torch_onnx_export_round_trip():
    torch.manual_seed(9)
    model = _randomize_bn(_Exported())
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.randn(2, 1, 8, 8), buffer, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    except (ImportError, ModuleNotFoundError) as exc:  # the exporter needs packages that are absent
        pytest.skip(f"torch.onnx.export is unavailable: {exc}")
    graph = load_onnx(onnx.load_from_string(buffer.getvalue()))
    kinds = [n.kind for n in graph]
    assert Kind.CAT in kinds and Kind.ADD in kinds and Kind.MAXPOOL in kinds
    assert any(n.kind is Kind.RELU and n.attrs.get("max") == 6.0 for n in graph)
    x = torch.randn(7, 1, 8, 8)  # another batch size than the export's
    torch.testing.assert_close(graph.run(x).softmax(1), model(x), rtol=1e-5, atol=1e-5)


# -- errors --------------------------------------------------------------------------------
def _dense_with(middle: list, inits: list = ()) -> onnx.ModelProto:
    w = _init("w", torch.eye(4))
    first = helper.make_node("Gemm", ["x", "w"], ["h"], name="fc")
    last = helper.make_node("Identity", [middle[-1].output[0]], ["y"], name="end")
    return _model([first, *middle, last], [w, *inits], ["N", 4], ["N", 4])


@pytest.mark.parametrize(
    "middle, inits, message",
    [
        ([helper.make_node("Sigmoid", ["h"], ["s"], name="act")], [],
         r"ONNX node 'act' \(Sigmoid\) at position 1 of 3 cannot be converted; supported ONNX operators: Gemm"),
        ([helper.make_node("Relu", ["h"], ["r"], name="r"), helper.make_node("Add", ["r", "one"], ["s"], name="shift")],
         [_init("one", np.ones(4))], r"'shift' \(Add\).*only supported as the bias"),
        ([helper.make_node("Softmax", ["h"], ["s"], name="sm")], [], r"'sm' \(Softmax\).*last operator"),
        ([helper.make_node("Clip", ["h", "m"], ["s"], name="clip")], [_init("m", -1.0)], r"Clip with min=-1.0 is not a ReLU"),
        ([helper.make_node("Reshape", ["h", "t"], ["s"], name="rs")], [_ints("t", [-1, 2, 2])],
         r"'rs' \(Reshape\).*only a flatten"),
        ([helper.make_node("Transpose", ["h"], ["s"], name="tr", perm=[1, 0])], [], r"moves the batch axis"),
    ],
)
def test_unsupported_operators_name_the_onnx_node(middle, inits, message):
    with pytest.raises(ConversionError, match=message):
        load_onnx(_dense_with(middle, inits))


def test_transpose_that_is_not_at_the_input_or_before_a_flatten_is_rejected():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["t"], ["y"], name="relu2"),
    ]
    with pytest.raises(ConversionError, match=r"'relu2' \(Relu\).*reads the output of a Transpose"):
        load_onnx(_model(nodes, [], ["N", 2, 3, 3], ["N", 3, 3, 2]))


@pytest.mark.parametrize(
    "attrs, message",
    [
        (dict(pads=[0, 0, 1, 1]), r"'conv' \(Conv\).*not equal on both sides"),
        (dict(auto_pad="SAME_UPPER", strides=[2, 2]), r"pads 1 in total along spatial axis 0, unequally"),
    ],
)
def test_asymmetric_convolution_padding_is_rejected(attrs, message):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], **attrs)
    with pytest.raises(ConversionError, match=message):
        load_onnx(_model([node], [_init("w", np.ones((1, 1, 3, 3)))], ["N", 1, 6, 6], ["N", 1, "H", "W"]))


def test_gemm_with_transposed_activation_is_rejected():
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm", transA=1)
    with pytest.raises(ConversionError, match=r"'gemm' \(Gemm\).*transA=1"):
        load_onnx(_model([node], [_init("w", np.ones((3, 2)))], [3, 3], [3, 2]))


def test_several_inputs_or_outputs_are_rejected():
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("a", "b")]
    two_in = _model([helper.make_node("Add", ["a", "b"], ["y"])], [], None, ["N", 2], inputs=inputs)
    with pytest.raises(ConversionError, match=r"exactly one input, found 2 \(\['a', 'b'\]\)"):
        load_onnx(two_in)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("y", "z")]
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])]
    with pytest.raises(ConversionError, match=r"exactly one output, found 2"):
        load_onnx(_model(nodes, [], ["N", 2], outputs=outputs))


@pytest.mark.parametrize("content", [b"\x08\x07\xff\xff\xff garbage \x00\x01", b"", b"not a model at all"])
def test_corrupt_file_is_named(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match=re.escape(str(path))):
        load_onnx(path)


def test_missing_file_and_wrong_argument():
    with pytest.raises(FileNotFoundError, match=r"ONNX file not found: .*nowhere\.onnx"):
        load_onnx("/nonexistent/nowhere.onnx")
    with pytest.raises(TypeError, match="path to a .onnx file or an onnx.ModelProto"):
        load_onnx(torch.nn.Linear(2, 2))


def test_missing_onnx_package_says_how_to_install_it(monkeypatch):
    _, proto = _mlp()
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install spikeflow\[onnx\]"):
        load_onnx(proto)
