"""The bench's experimental train-step variants compute what incv4's do (a speed lever is only worth timing when
it changes nothing else)."""
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from bench.experiments import fused_sgd_optimizer  # noqa: E402
from incv4.trainer import optim, recipe  # noqa: E402


def _tiny_net():
    ms.set_seed(1)
    return nn.SequentialCell(nn.Conv2d(3, 4, 3, has_bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Dense(4 * 8 * 8, 5))


def _train(build_optimizer, steps=3):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = _tiny_net()
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()), build_optimizer(net))
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = Tensor(np.array([1, 3], np.int32))
    for _ in range(steps):
        step(x, y)
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def test_weight_decay_inside_the_sgd_kernel_updates_like_incv4s_momentum():
    r = recipe.load(recipe.shipped_path("inception_v4_ascend.yaml"), overrides=["weight_decay=0.01"])
    lrs = [0.1, 0.2, 0.3]
    initial = {p.name: p.asnumpy().copy() for p in _tiny_net().trainable_params()}
    ours = _train(lambda net: optim.create_optimizer(net, r, lrs))
    lever = _train(lambda net: fused_sgd_optimizer.create_optimizer(net, r, lrs))
    assert set(ours) == set(lever) == {"0.weight", "0.bias", "1.gamma", "1.beta", "4.weight", "4.bias"}
    for name in ours:
        assert not np.array_equal(ours[name], initial[name]), f"{name} did not move"
        np.testing.assert_allclose(lever[name], ours[name], rtol=1e-6, atol=1e-7, err_msg=name)
