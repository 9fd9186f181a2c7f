"""The conversion presets' architectures, ANN training and saving."""

from __future__ import annotations

import pytest
import torch

from spikeflow.convert import Kind, convert, fold_batchnorm, simulate, trace
from spikeflow.convert.ann import ann_accuracy, fit_ann, load_ann, save_ann
from spikeflow.convert.models import lenet5, resnet18, seed002_net, vgg
from spikeflow.convert.presets import PRESETS, build_ann, get_preset, load_images
from spikeflow.train.checkpoint import CheckpointError


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet5_has_the_textbook_shape_and_size():
    model = lenet5((1, 28, 28), 10)
    # conv 6x(1x5x5)+6, conv 16x(6x5x5)+16, 400x120+120, 120x84+84, 84x10+10
    assert _params(model) == 156 + 2416 + 48120 + 10164 + 850
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    small = lenet5((1, 8, 8), 10)  # the second convolution is padded on the digits
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_seed002_net_matches_the_keras_layout():
    model = seed002_net((1, 28, 28), 10)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2 * 13 * 13, 784), (784, 500), (500, 84), (84, 10)]


def test_resnet18_has_the_cifar_resnet18_parameter_count():
    model = resnet18((3, 32, 32), 10)
    assert _params(model) == 11_173_962  # the usual CIFAR ResNet-18 with 10 classes
    graph = trace(model)
    kinds = [n.kind for n in graph]
    assert kinds.count(Kind.ADD) == 8 and kinds.count(Kind.RELU) == 17
    assert not any(n.kind is Kind.BATCHNORM for n in fold_batchnorm(graph))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_convertible_ann(name):
    preset = get_preset(name)
    shape = (3, 32, 32) if preset.cifar_shape else (1, 8, 8)
    kwargs = {"width": 4} if name == "resnet18" else {}
    model = build_ann(name, shape, 10) if not kwargs else resnet18(shape, 10, width=4)
    x = torch.rand(6, *shape)
    net = convert(model.eval(), x)
    assert simulate(net, x, 4)[4].shape == (6, 10)


def test_vgg_traces_with_max_pooling_and_batchnorm():
    kinds = [n.kind for n in trace(vgg((1, 28, 28), 10))]
    assert kinds.count(Kind.MAXPOOL) == 2 and kinds.count(Kind.BATCHNORM) == 4


def test_fit_ann_learns_a_separable_problem_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        losses = fit_ann(model, x, y, epochs=10, lr=3e-2, batch_size=64, seed=1)
        runs.append((losses, model[0].weight.detach().clone()))
    assert runs[0][0][-1] < runs[0][0][0] / 3
    assert ann_accuracy(model, x, y) > 0.95
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit_ann(model, x, y, epochs=0)


def test_save_and_load_ann(tmp_path):
    model = lenet5((1, 8, 8), 10)
    path = save_ann(tmp_path / "ann.pt", model, preset="lenet5", input_shape=[1, 8, 8], classes=10)
    loaded, settings = load_ann(path, lambda preset, input_shape, classes: build_ann(preset, input_shape, classes))
    assert settings == {"preset": "lenet5", "input_shape": [1, 8, 8], "classes": 10}
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_ann(path, lambda **s: lenet5((1, 28, 28), 10))
    other = tmp_path / "other.pt"
    torch.save({"a": 1}, other)
    with pytest.raises(CheckpointError, match="not an ANN saved by spikeflow"):
        load_ann(other, lambda **s: model)


def test_load_images_shapes():
    x_train, y_train, x_test, y_test = load_images("digits")
    assert x_train.shape[1:] == (1, 8, 8) and len(x_train) == len(y_train)
    cifar = load_images("digits", cifar_shape=True)[0]
    assert cifar.shape[1:] == (3, 32, 32)
    assert torch.equal(cifar[:, 0], cifar[:, 2])
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        load_images("cifar")
    with pytest.raises(ValueError, match="unknown conversion preset"):
        get_preset("alexnet")
