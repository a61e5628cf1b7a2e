"""The bench's experimental train-step variants compute what incv4's do (a speed lever is only worth timing when
it changes nothing else)."""
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from bench.experiments import fused_sgd_optimizer, split_graphs, unrolled_momentum  # noqa: E402
from incv4.trainer import optim, recipe  # noqa: E402


def _tiny_net():
    ms.set_seed(1)
    return nn.SequentialCell(nn.Conv2d(3, 4, 3, has_bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Dense(4 * 8 * 8, 5))


def _one_graph_step(net, loss_fn, optimizer):
    return nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), optimizer)


def _train(build_optimizer, steps=3, build_step=_one_graph_step):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = _tiny_net()
    step = build_step(net, nn.CrossEntropyLoss(), build_optimizer(net))
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = Tensor(np.array([1, 3], np.int32))
    for _ in range(steps):
        step(x, y)
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _assert_same_training(reference, lever, unmoved=()):
    """Both runs moved every parameter (except `unmoved`) from the shared initial values, to the same values."""
    initial = {p.name: p.asnumpy() for p in _tiny_net().trainable_params()}
    assert set(reference) == set(lever) == set(initial)
    for name in reference:
        assert name in unmoved or not np.array_equal(reference[name], initial[name]), f"{name} did not move"
        np.testing.assert_allclose(lever[name], reference[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_weight_decay_inside_the_sgd_kernel_updates_like_incv4s_momentum():
    r = recipe.load(recipe.shipped_path("inception_v4_ascend.yaml"), overrides=["weight_decay=0.01"])
    lrs = [0.1, 0.2, 0.3]
    ours = _train(lambda net: optim.create_optimizer(net, r, lrs))
    lever = _train(lambda net: fused_sgd_optimizer.create_optimizer(net, r, lrs))
    assert set(ours) == {"0.weight", "0.bias", "1.gamma", "1.beta", "4.weight", "4.bias"}
    _assert_same_training(ours, lever)


@pytest.mark.parametrize("overrides", [["weight_decay=0.01"],
                                       # a fixed loss scale the optimizer divides out (and pre-scales wd by)
                                       ["weight_decay=0.01", "loss_scale=64", "loss_scale_type=fixed",
                                        "drop_overflow_update=false"]])
def test_unrolled_momentum_updates_like_incv4s_momentum(overrides):
    r = recipe.load(recipe.shipped_path("inception_v4_ascend.yaml"), overrides=overrides)
    lrs = [0.1, 0.2, 0.3]
    ours = _train(lambda net: optim.create_optimizer(net, r, lrs))
    lever = _train(lambda net: unrolled_momentum.create_optimizer(net, r, lrs))
    _assert_same_training(ours, lever)


def test_lean_blocks_compute_what_incv4s_model_computes_and_leave_the_model_module_alone():
    from bench.experiments import lean_blocks
    from incv4.trainer import model

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ours = model.inception_v4(num_classes=5, drop_rate=0.0)
    lean = lean_blocks.inception_v4(num_classes=5, drop_rate=0.0)
    assert model.BasicConv2d is not lean_blocks.LeanBasicConv2d  # put back after the build
    assert not any(isinstance(c, lean_blocks.LeanBasicConv2d) for _, c in ours.cells_and_names())
    lean_cells = [c for _, c in lean.cells_and_names() if isinstance(c, model.BasicConv2d)]
    assert len(lean_cells) == 149 and all(isinstance(c, lean_blocks.LeanBasicConv2d) for c in lean_cells)
    assert [p.name for p in lean.get_parameters()] == [p.name for p in ours.get_parameters()]
    ms.load_param_into_net(lean, ours.parameters_dict(), strict_load=True)
    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, 75, 75)).astype(np.float32))
    for train in (False, True):  # eval: moving statistics; train: batch statistics and their update
        ours.set_train(train)
        lean.set_train(train)
        np.testing.assert_allclose(lean(x).asnumpy(), ours(x).asnumpy(), rtol=1e-5, atol=1e-5)
    moving = "features.0.conv2d_1a_3x3.bn.moving_mean"
    np.testing.assert_allclose(lean.parameters_dict()[moving].asnumpy(), ours.parameters_dict()[moving].asnumpy(),
                               rtol=1e-6, atol=1e-7)
    assert np.abs(ours.parameters_dict()[moving].asnumpy()).max() > 0


def test_split_graphs_train_like_one_graph():
    r = recipe.load(recipe.shipped_path("inception_v4_ascend.yaml"), overrides=["weight_decay=0.01"])
    lrs = [0.1, 0.2, 0.3]
    one = _train(lambda net: optim.create_optimizer(net, r, lrs),
                 build_step=lambda *parts: _one_graph_step(*parts).set_train())
    split = _train(lambda net: optim.create_optimizer(net, r, lrs),
                   build_step=lambda *parts: split_graphs.SplitStep(*parts).set_train())
    # in train mode BatchNorm subtracts the batch mean, so the conv bias in front of it gets no gradient
    _assert_same_training(one, split, unmoved=("0.bias",))


def test_the_bench_gives_both_mindspore_sides_the_trainers_onednn_cap_and_timm_none():
    from bench import train_worker
    from bench.common import MINDSPORE_CPU_ENV
    from incv4.trainer import cpu_backend

    assert MINDSPORE_CPU_ENV == {cpu_backend.ISA_ENV: cpu_backend.ISA_CAP}  # the bench measures what incv4 runs
    environ = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PATH": "/bin"}
    train_worker.apply_onednn_isa("capped", environ)
    assert environ == {"ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/bin"}
    train_worker.apply_onednn_isa("default", environ)
    assert environ == {"PATH": "/bin"}
    assert train_worker.argument_parser().parse_args(["--side", "mindcv", "--size", "75"]).onednn_isa == "capped"


class _SquaredSum(nn.Cell):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def construct(self, x):
        return (self.conv(x) ** 2).sum()


# Every kind of convolution InceptionV4 has: stride-2 valid (stem, reductions), explicit pad 1, 1x7 / 7x1 / 1x1 same.
_GEOMETRIES = [(3, 32, 3, 2, "valid", 0, 17), (64, 96, 3, 1, "pad", 1, 9), (192, 224, (1, 7), 1, "same", 0, 8),
               (32, 16, (7, 1), 1, "same", 0, 8), (16, 8, 1, 1, "same", 0, 5)]


@pytest.mark.parametrize("cin,cout,kernel,stride,pad_mode,padding,size", _GEOMETRIES)
def test_the_onednn_conv_op_computes_mindsporess_conv2d_and_both_gradients(cin, cout, kernel, stride, pad_mode,
                                                                           padding, size):
    from bench.experiments import onednn_conv

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(2)
    reference = nn.Conv2d(cin, cout, kernel, stride, pad_mode=pad_mode, padding=padding, weight_init="normal")
    lever = onednn_conv.OneDnnConv2d(reference, str(onednn_conv.library()))
    assert lever.weight is reference.weight
    x = Tensor(np.random.default_rng(0).standard_normal((2, cin, size, size)).astype(np.float32))
    expected, got = reference(x).asnumpy(), lever(x).asnumpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    grads = [ms.grad(_SquaredSum(conv), grad_position=0, weights=[reference.weight])(x) for conv in (reference, lever)]
    (dx_expected, (dw_expected,)), (dx_got, (dw_got,)) = grads
    np.testing.assert_allclose(dx_got.asnumpy(), dx_expected.asnumpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw_got.asnumpy(), dw_expected.asnumpy(), rtol=1e-4, atol=1e-3)
    assert np.abs(dw_expected.asnumpy()).max() > 1.0  # the gradients compared are not all ~0


def test_the_onednn_conv_model_replaces_every_convolution_and_keeps_the_parameter_names():
    from bench.experiments import onednn_conv
    from incv4.trainer import model

    ours, lever = model.inception_v4(num_classes=5), onednn_conv.inception_v4(num_classes=5)
    assert [p.name for p in lever.get_parameters()] == [p.name for p in ours.get_parameters()]
    replaced = [c for _, c in lever.cells_and_names() if isinstance(c, onednn_conv.OneDnnConv2d)]
    assert len(replaced) == 149 and not any(isinstance(c, nn.Conv2d) for _, c in lever.cells_and_names())
    assert model.BasicConv2d.__name__ == "BasicConv2d"  # the model module's own class is put back
    assert any(isinstance(c, nn.Conv2d) for _, c in model.inception_v4(num_classes=5).cells_and_names())
