"""The compiled train step on a tiny network (graph mode, CPU): a non-finite loss skips the update, the optimizer
moves the weights otherwise, and the stop flag passes through. The NaN comes from a test-side loss wrapper
(training_nan.LossWithGain); the product's step has no test input."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from tiny_nets import TinyConvNet  # noqa: E402
from training_nan import LossWithGain  # noqa: E402

from incv4.trainer.training.step import build_train_step  # noqa: E402


@pytest.fixture(scope="module", params=[True, False], ids=["gradients-checked", "loss-checked"])
def step_and_net(request):
    """Both finiteness checks: every gradient (float16 runs) or the loss (float32 runs)."""
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(1)
    net = TinyConvNet(bn_momentum=0.9997)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    loss = LossWithGain(nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = build_train_step(net, loss, optimizer, loss_scale=1.0, rank_size=1, check_gradients=request.param)
    return step, net, loss


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.normal(size=(8, 3, 8, 8)).astype(np.float32)),
            ms.Tensor(rng.integers(0, 5, size=8).astype(np.int32)))


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _call(step, update=True, stop=0.0):
    images, labels = _batch()
    return step(images, labels, ms.Tensor(update), ms.Tensor(np.float32(stop)))


def test_a_finite_step_updates_and_a_nan_step_does_not(step_and_net):
    step, net, loss_fn = step_and_net
    loss_fn.set_nan(False)
    before = _weights(net)
    loss, finite, stop = _call(step)
    assert np.isfinite(loss.asnumpy()) and bool(finite.asnumpy()) and float(stop.asnumpy()) == 0.0
    after_good = _weights(net)
    assert any(not np.array_equal(before[k], after_good[k]) for k in before)

    loss_fn.set_nan(True)
    loss, finite, _ = _call(step)
    assert np.isnan(loss.asnumpy()) and not bool(finite.asnumpy())
    after_nan = _weights(net)
    assert all(np.array_equal(after_good[k], after_nan[k]) for k in after_nan)
    assert all(np.isfinite(v).all() for v in after_nan.values())


def test_update_false_computes_but_leaves_weights_and_the_stop_flag_passes_through(step_and_net):
    step, net, loss_fn = step_and_net
    loss_fn.set_nan(False)
    before = _weights(net)
    _, finite, stop = _call(step, update=False, stop=1.0)
    assert bool(finite.asnumpy()) and float(stop.asnumpy()) == 1.0
    assert all(np.array_equal(before[k], v) for k, v in _weights(net).items())
