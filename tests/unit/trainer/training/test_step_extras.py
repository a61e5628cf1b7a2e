"""MindCV's train-step extras in incv4's compiled step, with MindCV's own TrainStep (mindcv/utils/train_step.py,
0.3.0) as the oracle: the same tiny network from the same weights, the same batches, then the same weights (and EMA
weights, and loss scale). incv4's step runs compiled, as in training; MindCV's too, except under a dynamic loss
scale, which MindSpore runs on the CPU only in PyNative."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
train_step_mod = pytest.importorskip("mindcv.utils.train_step", reason="mindcv==0.3.0 (the dev extra) is the oracle")
from mindspore import nn  # noqa: E402

from tiny_nets import TinyConvNet, network_values as _values, tiny_batch as _batch  # noqa: E402
from training_nan import LossWithGain  # noqa: E402

from incv4.trainer.training import step as step_mod  # noqa: E402

STEPS = 4


def _pair():
    """Two copies of one network, each with its momentum optimizer (constant lr) and gain-able loss."""
    ms.set_seed(3)
    ours, theirs = TinyConvNet(), TinyConvNet()
    ms.load_param_into_net(theirs, {p.name: ms.Parameter(p.data.copy(), p.name) for p in ours.get_parameters()})
    made = []
    for net in (ours, theirs):
        optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
        made.append((net, optimizer, LossWithGain(nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))))
    return made


def _run_both(extras, mindcv_kwargs, loss_scale=1.0, nan_at=(), scale_sense=None):
    (ours_net, ours_opt, ours_loss), (theirs_net, theirs_opt, theirs_loss) = _pair()
    ms.set_context(mode=ms.GRAPH_MODE)
    ours = step_mod.build_train_step(ours_net, ours_loss, ours_opt, loss_scale, 1, check_gradients=False,
                                     extras=extras)
    finites = []
    for index in range(STEPS):
        ours_loss.set_nan(index in nan_at)
        _, finite, _ = ours(*_batch(index), ms.Tensor(True), ms.Tensor(np.float32(0.0)))
        finites.append(bool(finite.asnumpy()))
    ms.set_context(mode=ms.PYNATIVE_MODE if scale_sense is not None else ms.GRAPH_MODE)
    try:
        theirs = train_step_mod.TrainStep(nn.WithLossCell(theirs_net, theirs_loss), theirs_opt,
                                          scale_sense=scale_sense or ms.Tensor(loss_scale, ms.float32),
                                          **mindcv_kwargs).set_train()
        for index in range(STEPS):
            theirs_loss.set_nan(index in nan_at)
            theirs(*_batch(index))
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    return ours, theirs, finites


def _assert_same(ours: dict, theirs: dict):
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=2e-5, atol=2e-6, err_msg=name)


def test_clip_grad_clips_as_mindcv():
    ours, theirs, _ = _run_both(step_mod.StepExtras(clip_value=0.05), dict(clip_grad=True, clip_value=0.05))
    _assert_same(_values(ours.with_loss), _values(theirs.network))
    plain, _, _ = _run_both(step_mod.StepExtras(), {})
    assert not np.allclose(_values(plain.with_loss)["fc.weight"], _values(ours.with_loss)["fc.weight"])


def test_gradient_accumulation_updates_every_m_steps_as_mindcv():
    ours, theirs, _ = _run_both(step_mod.StepExtras(accumulation_steps=2), dict(gradient_accumulation_steps=2))
    _assert_same(_values(ours.with_loss), _values(theirs.network))
    # the lr schedule moves on every batch (MindCV's GradientAccumulation's stated intent), updates every 2nd
    assert int(ours.optimizer.global_step.asnumpy()[0]) == STEPS
    assert int(ours.micro_step.asnumpy()[0]) == 0 and not np.any(_values(ours, "accumulated.")["accumulated.fc.weight"])


def test_ema_keeps_mindcvs_ema_weights_and_evaluation_swaps_them_in():
    ours, theirs, _ = _run_both(step_mod.StepExtras(ema_decay=0.9999), dict(ema=True, ema_decay=0.9999))
    _assert_same(_values(ours, "ema."), _values(theirs, "ema."))
    assert float(ours.updates.asnumpy()) == float(theirs.updates.asnumpy()) == STEPS
    trained, ema = _values(ours.with_loss), _values(ours, "ema.")
    assert not np.allclose(trained["fc.weight"], ema["ema.fc.weight"])
    restore = ours.ema_weights_in()
    np.testing.assert_array_equal(ours.with_loss.net.fc.weight.asnumpy(), ema["ema.fc.weight"])
    np.testing.assert_array_equal(ours.with_loss.net.bn.moving_mean.asnumpy(), ema["ema.bn.moving_mean"])
    restore()
    _assert_same(_values(ours.with_loss), trained)


def test_dynamic_loss_scale_follows_mindspores_update_cell_and_drops_the_overflowing_update(monkeypatch):
    """MindCV builds DynamicLossScaleManager(loss_scale, 2, 2000).get_update_cell(); MindSpore runs its overflow
    check only on Ascend/GPU, so the oracle here is that update cell driven directly, and a fixed-scale run that
    drops the same step. A window of 2 (instead of 2000) lets the scale grow back within the test."""
    monkeypatch.setattr(step_mod, "DYNAMIC_SCALE_WINDOW", 2)
    (net, optimizer, loss), (plain_net, plain_optimizer, plain_loss) = _pair()
    ms.set_context(mode=ms.GRAPH_MODE)
    ours = step_mod.build_train_step(net, loss, optimizer, 1024.0, 1, check_gradients=False,
                                     extras=step_mod.StepExtras(dynamic_loss_scale=True))
    plain = step_mod.build_train_step(plain_net, plain_loss, plain_optimizer, 1.0, 1, check_gradients=False)
    oracle_cell = nn.DynamicLossScaleUpdateCell(1024.0, 2, 2)
    oracle_scale = ms.Parameter(ms.Tensor(1024.0, ms.float32), name="oracle_scale")
    scales, expected, finites = [], [], []
    for index in range(5):
        for gain in (loss, plain_loss):
            gain.set_nan(index == 1)
        _, finite, _ = ours(*_batch(index), ms.Tensor(True), ms.Tensor(np.float32(0.0)))
        plain(*_batch(index), ms.Tensor(True), ms.Tensor(np.float32(0.0)))
        finites.append(bool(finite.asnumpy()))
        scales.append(float(ours.scale_sense.asnumpy()))
        oracle_cell(oracle_scale, ms.Tensor(index == 1))
        expected.append(float(oracle_scale.asnumpy()))
    assert finites == [True, False, True, True, True]
    assert scales == expected == [1024.0, 512.0, 512.0, 1024.0, 1024.0]
    _assert_same(_values(ours.with_loss), _values(plain.with_loss))  # scaled by a power of 2 and back: exact
    assert "loss_scale" in {p.name for p in ours.get_parameters()}  # a checkpoint carries the scale reached
