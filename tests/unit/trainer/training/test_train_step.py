"""The compiled train step and the BatchNorm recalibration, on a tiny network (graph mode, CPU): a non-finite loss
skips the update, the optimizer moves the weights otherwise, and recalibration recovers the batches' statistics."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from incv4.trainer.training.train import BatchNormRecalibrator, build_train_step, nan_steps_from_env  # noqa: E402


class Tiny(nn.Cell):
    def __init__(self, bn_momentum=0.9997):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(4, momentum=bn_momentum)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(4, 5)

    def construct(self, x):
        return self.fc(self.flatten(self.pool(self.bn(self.conv(x)))))


@pytest.fixture(scope="module", params=[True, False], ids=["gradients-checked", "loss-checked"])
def step_and_net(request):
    """Both finiteness checks: every gradient (float16 runs) or the loss (float32 runs)."""
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(1)
    net = Tiny()
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    step = build_train_step(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer,
                            loss_scale=1.0, rank_size=1, check_gradients=request.param)
    return step, net


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.normal(size=(8, 3, 8, 8)).astype(np.float32)),
            ms.Tensor(rng.integers(0, 5, size=8).astype(np.int32)))


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _call(step, gain, update=True, stop=0.0):
    images, labels = _batch()
    return step(images, labels, ms.Tensor(np.float32(gain)), ms.Tensor(update), ms.Tensor(np.float32(stop)))


def test_a_finite_step_updates_and_a_nan_step_does_not(step_and_net):
    step, net = step_and_net
    before = _weights(net)
    loss, finite, stop = _call(step, 1.0)
    assert np.isfinite(loss.asnumpy()) and bool(finite.asnumpy()) and float(stop.asnumpy()) == 0.0
    after_good = _weights(net)
    assert any(not np.array_equal(before[k], after_good[k]) for k in before)

    loss, finite, _ = _call(step, np.nan)
    assert np.isnan(loss.asnumpy()) and not bool(finite.asnumpy())
    after_nan = _weights(net)
    assert all(np.array_equal(after_good[k], after_nan[k]) for k in after_nan)
    assert all(np.isfinite(v).all() for v in after_nan.values())


def test_update_false_computes_but_leaves_weights_and_the_stop_flag_passes_through(step_and_net):
    step, net = step_and_net
    before = _weights(net)
    _, finite, stop = _call(step, 1.0, update=False, stop=1.0)
    assert bool(finite.asnumpy()) and float(stop.asnumpy()) == 1.0
    assert all(np.array_equal(before[k], v) for k, v in _weights(net).items())


def test_recalibration_recovers_the_average_batch_statistics():
    """Forward passes with MindCV's slow momentum, then the solved estimate equals the batches' mean statistics
    (exactly the recurrence; for mu near 1 the weights are near-uniform)."""
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = nn.BatchNorm2d(3, momentum=0.9997)
    net.set_train(True)
    recal = BatchNormRecalibrator(net)
    assert len(recal.layers) == 1
    before = recal.snapshot()
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[[[5.0]], [[-2.0]], [[0.5]]], scale=[[[3.0]], [[0.5]], [[1.0]]],
                          size=(16, 3, 4, 4)).astype(np.float32) for _ in range(6)]
    for batch in batches:
        net(ms.Tensor(batch))
    moved = net.moving_mean.asnumpy().copy()
    assert np.allclose(moved, 0.0, atol=0.02)  # the trap: 0.9997 barely moves in 6 passes
    recal.solve(before, len(batches))
    means = np.mean([b.mean(axis=(0, 2, 3)) for b in batches], axis=0)
    variances = np.mean([b.var(axis=(0, 2, 3), ddof=1) for b in batches], axis=0)
    assert np.allclose(net.moving_mean.asnumpy(), means, rtol=2e-3, atol=2e-3)
    assert np.allclose(net.moving_variance.asnumpy(), variances, rtol=5e-3)


def test_nan_steps_hook_parses_a_comma_list(monkeypatch):
    monkeypatch.setenv("INCV4_TEST_NAN_AT_STEP", "3, 5,9")
    assert nan_steps_from_env() == {3, 5, 9}
    monkeypatch.delenv("INCV4_TEST_NAN_AT_STEP")
    assert nan_steps_from_env() == set()


def test_finetuning_loads_matching_weights_and_reinitialises_a_different_classifier(tmp_path, capsys):
    from incv4.trainer.recipe import RecipeError
    from incv4.trainer.training.train import _load_finetune_weights

    source = Tiny()
    source.conv.weight.set_data(ms.Tensor(np.full(source.conv.weight.shape, 0.25, np.float32)))
    source.fc = nn.Dense(4, 7)  # another num_classes
    ms.save_checkpoint(source, str(tmp_path / "pretrained.ckpt"))
    target = Tiny()
    fresh_fc = target.fc.weight.asnumpy().copy()
    _load_finetune_weights(target, str(tmp_path / "pretrained.ckpt"))
    assert np.allclose(target.conv.weight.asnumpy(), 0.25)
    assert np.array_equal(target.fc.weight.asnumpy(), fresh_fc)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"fine-tuning from {tmp_path / 'pretrained.ckpt'}: loaded ")
    assert "re-initialised 2: fc.weight (checkpoint (7, 4), network (5, 4))" in line and "fc.bias" in line
    with pytest.raises(RecipeError, match="ckpt_path.*does not exist"):
        _load_finetune_weights(target, str(tmp_path / "absent.ckpt"))
