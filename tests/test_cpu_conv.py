"""incv4's CPU convolution op (trainer/cpu_conv.py, cpu_conv.cc): it computes what MindSpore's Conv2D computes,
forward and both gradients, for every kind of convolution InceptionV4 has; swapping it into the network keeps
every parameter name and the network's output; and the trainer says which convolutions it runs, and why."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from incv4.trainer import cpu_conv, model  # noqa: E402
from incv4.trainer.recipe import RecipeError  # noqa: E402


@pytest.fixture(scope="module")
def library():
    return str(cpu_conv.library())  # CI has g++ and onednn-devel's headers (make setup-dev)


class _SquaredSum(nn.Cell):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def construct(self, x):
        return (self.conv(x) ** 2).sum()


# Stride-2 valid (stem, reductions), explicit pad 1, and 1x7 / 7x1 / 1x1 with pad_mode same.
GEOMETRIES = [(3, 32, 3, 2, "valid", 0, 17), (64, 96, 3, 1, "pad", 1, 9), (192, 224, (1, 7), 1, "same", 0, 8),
              (32, 16, (7, 1), 1, "same", 0, 8), (16, 8, 1, 1, "same", 0, 5)]


@pytest.mark.parametrize("cin,cout,kernel,stride,pad_mode,padding,size", GEOMETRIES)
def test_the_op_computes_mindspores_conv2d_and_both_gradients(library, cin, cout, kernel, stride, pad_mode,
                                                              padding, size):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(2)
    reference = nn.Conv2d(cin, cout, kernel, stride, pad_mode=pad_mode, padding=padding, weight_init="normal")
    ours = cpu_conv._conv_cell(reference, library)
    assert ours.weight is reference.weight
    x = Tensor(np.random.default_rng(0).standard_normal((2, cin, size, size)).astype(np.float32))
    expected, got = reference(x).asnumpy(), ours(x).asnumpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    grads = [ms.grad(_SquaredSum(conv), grad_position=0, weights=[reference.weight])(x) for conv in (reference, ours)]
    (dx_expected, (dw_expected,)), (dx_got, (dw_got,)) = grads
    np.testing.assert_allclose(dx_got.asnumpy(), dx_expected.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw_got.asnumpy(), dw_expected.asnumpy(), rtol=1e-4, atol=1e-3)
    assert np.abs(dw_expected.asnumpy()).max() > 1.0  # the gradients compared are not all ~0


def test_swapping_the_op_into_inceptionv4_keeps_the_names_and_the_output(library):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(3)
    net = model.inception_v4(num_classes=5, drop_rate=0.0).set_train(False)
    names = [p.name for p in net.get_parameters()]
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 75, 75)).astype(np.float32))
    expected = net(x).asnumpy()
    swapped = cpu_conv.swap(net, library)
    assert len(swapped) == 149 and all(name.endswith(".conv.weight") for name in swapped)
    assert [p.name for p in net.get_parameters()] == names
    assert not any(isinstance(cell, nn.Conv2d) for _, cell in net.cells_and_names())
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-3, atol=1e-4)


def test_choose_says_which_convolutions_run(monkeypatch, tmp_path):
    said = []
    monkeypatch.setenv(cpu_conv.CHOICE_ENV, "mindspore")
    assert cpu_conv.choose(said.append) is None and "INCV4_CPU_CONV=mindspore" in said[-1]
    monkeypatch.setenv(cpu_conv.CHOICE_ENV, "fast")
    with pytest.raises(RecipeError, match="INCV4_CPU_CONV='fast': expected auto or mindspore"):
        cpu_conv.choose(said.append)
    monkeypatch.delenv(cpu_conv.CHOICE_ENV)
    assert cpu_conv.choose(said.append).endswith(".so") and "incv4's oneDNN op" in said[-1]
    # a fresh cache and no g++ on PATH: MindSpore's convolutions, and the reason
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cpu_conv.choose(said.append) is None and said[-1].endswith("unavailable: g++ is not installed)")
    # no headers
    monkeypatch.setattr(cpu_conv, "DEVEL_HEADER", "oneapi/dnnl/not-there.hpp")
    assert cpu_conv.choose(said.append) is None and "no oneDNN headers" in said[-1]
    assert not list(tmp_path.glob("incv4/*.so"))


def test_the_backward_adds_the_weight_decay_to_the_weight_gradient_only(library):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(5)
    reference = nn.Conv2d(32, 48, 3, 1, pad_mode="pad", padding=1, weight_init="normal")
    x = Tensor(np.random.default_rng(3).standard_normal((2, 32, 9, 9)).astype(np.float32))
    grads = {decay: ms.grad(_SquaredSum(cpu_conv._conv_cell(reference, library, decay)), grad_position=0,
                            weights=[reference.weight])(x) for decay in (0.0, 0.25)}
    (dx_plain, (dw_plain,)), (dx_decayed, (dw_decayed,)) = grads[0.0], grads[0.25]
    np.testing.assert_array_equal(dx_decayed.asnumpy(), dx_plain.asnumpy())
    np.testing.assert_allclose(dw_decayed.asnumpy(), dw_plain.asnumpy() + 0.25 * reference.weight.asnumpy(),
                               rtol=1e-5, atol=1e-4)


class _TwoConvNet(nn.Cell):
    """Two BasicConv2d blocks (what swap() replaces) and a classifier (decayed by the optimizer either way)."""

    def __init__(self):
        super().__init__()
        self.features = nn.SequentialCell([model.BasicConv2d(3, 8, 3, stride=2, pad_mode="valid"),
                                           model.BasicConv2d(8, 16, 3, pad_mode="pad", padding=1)])
        self.classifier = nn.Dense(16, 4)

    def construct(self, x):
        return self.classifier(self.features(x).mean(axis=(2, 3)))


@pytest.mark.parametrize("keys", [dict(loss_scale=8.0),  # the optimizer divides by the fixed scale (MindCV)
                                  dict(loss_scale=8.0, drop_overflow_update=True)])  # the step unscales
def test_training_with_the_decay_in_the_op_equals_the_optimizers_decay(library, keys):
    """Three train steps as train.py builds them: MindSpore's Conv2D with the optimizer decaying every weight, and
    the op adding optim.gradient_weight_decay(recipe) x weight to its gradients with the optimizer leaving the
    conv weights undecayed. Same weights after, and the decay mattered."""
    from incv4.trainer import optim, train
    from incv4.trainer import recipe as recipes

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(6)
    batches = [(Tensor(rng.standard_normal((4, 3, 15, 15)).astype(np.float32)),
                Tensor(rng.integers(0, 4, 4).astype(np.int32))) for _ in range(3)]

    def train_three_steps(weight_decay, use_op):
        r = recipes.load(recipes.shipped_path("inception_v4_ascend.yaml"),
                         overrides=[f"weight_decay={weight_decay}", "num_classes=4", "label_smoothing=0.1"],
                         **keys)
        ms.set_seed(7)
        net = _TwoConvNet()
        decayed = cpu_conv.swap(net, library, optim.gradient_weight_decay(r)) if use_op else []
        opt = optim.create_optimizer(net, r, [0.1, 0.1, 0.1], decayed)
        step = train.build_train_step(net, optim.create_loss(r), opt, r.loss_scale, 1,
                                      optim.optimizer_loss_scale(r), check_gradients=False)
        one, update, go = Tensor(np.float32(1.0)), Tensor(True), Tensor(np.float32(0.0))
        for images, labels in batches:
            step(images, labels, one, update, go)
        return {p.name: p.asnumpy().copy() for p in net.trainable_params()}

    reference, ours = train_three_steps(0.05, use_op=False), train_three_steps(0.05, use_op=True)
    undecayed = train_three_steps(0.0, use_op=True)
    assert list(ours) == list(reference)
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    conv = "features.1.conv.weight"
    assert np.abs(undecayed[conv] - reference[conv]).max() > 100 * np.abs(ours[conv] - reference[conv]).max()
