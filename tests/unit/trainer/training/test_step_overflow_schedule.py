"""What an overflowing step (non-finite gradients, the update dropped) does to the lr schedule (the optimizer's
global_step), the accumulation micro-step and the EMA, with MindCV 0.3.0's own TrainStep as the oracle
(mindspore-lab/mindcv, tag v0.3.0 = f9478c626cddfe81c1b078c5884be78d1bb486b4, mindcv/utils/train_step.py).

MindCV drops an overflowing step only with a loss-scale update cell (dynamic, or fixed with drop_overflow_update),
and then skips everything under `if not overflow:`: no accumulation (so GradientAccumulation's micro-step and its
get_lr() do not run), no optimizer call (so global_step stays), no ema_update() (so `updates` stays); only the loss
scale moves (process_loss_scale). incv4 does the same, with or without accumulation.

On a finite step that only accumulates, MindCV calls optimizer.get_lr() "to update the learning rate". In the
MindSpore MindCV 0.3.0 was written for, get_lr() advanced global_step (for a dynamic lr; e.g. mindspore-ai/mindspore
051455b4, mindspore/python/mindspore/nn/optim/optimizer.py); in MindSpore 2.10 it no longer does (each optimizer's
construct advances it), so MindCV run here moves the schedule only at the updates. incv4 keeps MindCV's intent (the
schedule moves on every finite step); the test pins both counts.

MindSpore checks overflow only on Ascend/GPU (TrainOneStepWithLossScaleCell.get_overflow_status reads the NPU float
status otherwise); the oracle swaps in MindSpore's own infnan check (IsFinite over the gradients, its Ascend infnan
mode), which runs on the CPU. Everything else is MindCV's code, compiled (graph mode) as incv4's step is."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
train_step_mod = pytest.importorskip("mindcv.utils.train_step", reason="mindcv==0.3.0 (the dev extra) is the oracle")
from mindspore import nn  # noqa: E402
from mindspore.nn.wrap import loss_scale as loss_scale_mod  # noqa: E402

from tiny_nets import TinyConvNet, network_values as _values, tiny_batch as _batch  # noqa: E402
from training_nan import LossWithGain  # noqa: E402

from incv4.trainer.training import step as step_mod  # noqa: E402

STEPS = 6
# with M = 2: step 1 overflows where the update would have come, step 3 right after an update
NAN_AT = (1, 3)
LOSS_SCALE = 1024.0
EMA_DECAY = 0.9999
# a dynamic lr (a list, so global_step indexes it) of one value: the weights compare whatever global_step says
LR = [0.1] * 16


class _MindcvOnCpu(train_step_mod.TrainStep):
    """MindCV's TrainStep with MindSpore's infnan overflow check in place of the NPU float status."""

    def get_overflow_status(self, status, compute_output):
        return self._get_distributed_overflow_status_on_infnan_mode(loss_scale_mod._ascend_grad_overflow,
                                                                    compute_output)


def _assert_same(ours: dict, theirs: dict, what: str):
    assert sorted(ours) == sorted(theirs), what
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=2e-5, atol=2e-6, err_msg=f"{what}: {name}")


def _both(accumulation_steps):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(3)
    ours_net, theirs_net = TinyConvNet(), TinyConvNet()
    ms.load_param_into_net(theirs_net, {p.name: ms.Parameter(p.data.copy(), p.name)
                                        for p in ours_net.get_parameters()})
    ours_loss, theirs_loss = (LossWithGain(nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
                              for _ in range(2))
    ours = step_mod.build_train_step(
        ours_net, ours_loss, nn.Momentum(ours_net.trainable_params(), learning_rate=LR, momentum=0.9), LOSS_SCALE,
        1, check_gradients=False,
        extras=step_mod.StepExtras(dynamic_loss_scale=True, accumulation_steps=accumulation_steps,
                                   ema_decay=EMA_DECAY))
    # MindCV's create_trainer for loss_scale_type dynamic: DynamicLossScaleManager(loss_scale, 2, 2000)'s cell
    theirs = _MindcvOnCpu(nn.WithLossCell(theirs_net, theirs_loss),
                          nn.Momentum(theirs_net.trainable_params(), learning_rate=LR, momentum=0.9),
                          scale_sense=nn.DynamicLossScaleUpdateCell(LOSS_SCALE, 2, 2000), ema=True,
                          ema_decay=EMA_DECAY, gradient_accumulation_steps=accumulation_steps).set_train()
    return (ours, ours_loss), (theirs, theirs_loss)


def _global_step(step):
    return int(step.optimizer.global_step.asnumpy()[0])


def _run(accumulation_steps):
    """Both steps on the same batches, the same steps overflowing; MindCV's and incv4's counters after each step,
    with the weights, EMA weights, accumulated gradients and loss scale compared at every step."""
    (ours, ours_loss), (theirs, theirs_loss) = _both(accumulation_steps)
    seen = {key: [] for key in ("finite", "ours_global", "theirs_global", "micro", "updates", "scale")}
    for index in range(STEPS):
        for loss in (ours_loss, theirs_loss):
            loss.set_nan(index in NAN_AT)
        _, finite, _ = ours(*_batch(index), ms.Tensor(True), ms.Tensor(np.float32(0.0)))
        theirs(*_batch(index))
        seen["finite"].append(bool(finite.asnumpy()))
        seen["ours_global"].append(_global_step(ours))
        seen["theirs_global"].append(_global_step(theirs))
        if accumulation_steps > 1:
            micro = int(ours.micro_step.asnumpy()[0])
            assert micro == int(theirs.gradient_accumulation._accumulation_step.asnumpy()), f"micro step {index}"
            seen["micro"].append(micro)
            accumulated = {name.replace("accumulated.", ""): v
                           for name, v in _values(ours, "accumulated.").items()}
            theirs_accumulated = {name.replace("grad_accumulation.", ""): v
                                  for name, v in _values(theirs.gradient_accumulation, "grad_accumulation.").items()}
            _assert_same(accumulated, theirs_accumulated, f"accumulated gradients after step {index}")
        assert float(ours.updates.asnumpy()) == float(theirs.updates.asnumpy()), f"EMA updates after step {index}"
        seen["updates"].append(int(ours.updates.asnumpy()))
        assert float(ours.scale_sense.asnumpy()) == float(theirs.scale_sense.asnumpy()), f"scale after step {index}"
        seen["scale"].append(float(ours.scale_sense.asnumpy()))
        _assert_same(_values(ours.with_loss, ""), _values(theirs.network, ""), f"weights after step {index}")
        _assert_same(_values(ours, "ema."), _values(theirs, "ema."), f"EMA weights after step {index}")
    return seen


def test_an_overflowing_step_moves_no_counter_without_accumulation_as_mindcv():
    seen = _run(1)
    assert seen["finite"] == [True, False, True, False, True, True]
    # the lr schedule, as MindCV's: the optimizer is not called on an overflowing step
    assert seen["ours_global"] == seen["theirs_global"] == [1, 1, 2, 2, 3, 4]
    assert seen["updates"] == [1, 1, 2, 2, 3, 4]
    assert seen["scale"] == [1024.0, 512.0, 512.0, 256.0, 256.0, 256.0]


def test_an_overflowing_step_moves_no_counter_while_accumulating_as_mindcv():
    seen = _run(2)
    assert seen["finite"] == [True, False, True, False, True, True]
    # an overflowing step neither accumulates nor counts: the update comes after 2 finite steps (steps 2 and 5)
    assert seen["micro"] == [1, 1, 0, 0, 1, 0]
    assert seen["updates"] == [1, 1, 2, 2, 3, 4]
    assert seen["scale"] == [1024.0, 512.0, 512.0, 256.0, 256.0, 256.0]
    # neither moves the lr schedule on an overflowing step. On a finite one incv4 moves it (MindCV's stated intent,
    # get_lr() in the MindSpore of its day); MindCV on MindSpore 2.10 moves it only at the 2 updates
    assert seen["ours_global"] == [1, 1, 2, 2, 3, 4]
    assert seen["theirs_global"] == [0, 0, 1, 1, 1, 2]
