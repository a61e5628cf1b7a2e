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

