"""The compiled data-parallel train step (graph mode on every device), with MindCV's train-step extras.

Inputs (images, labels, update, stop); outputs (loss, finite, stop_any). The loss is scaled by the loss scale for
the backward pass; the optimizer divides by `optimizer_loss_scale` (MindCV hands a fixed loss scale to the
optimizer) and the step unscales the rest. Gradients are averaged across ranks; the optimizer updates only when
the step is finite and `update` is set; the stop flag is summed across ranks, so every rank sees a SIGTERM any
rank got.

"Finite" means every gradient is finite (check_gradients, needed under float16 or dynamic loss scaling, where the
backward pass can overflow while the loss does not), else every rank's loss is finite: in float32 a finite loss has
finite gradients in practice, and checking every gradient tensor is a large share of a small CPU step.

The extras follow MindCV's TrainStep (mindcv/utils/train_step.py, 0.3.0) and its trainer factory:
- dynamic loss scale: MindSpore's DynamicLossScaleUpdateCell (factor 2, window 2000, MindCV's values) halves the
  scale after an overflowing step, whose update is dropped, and doubles it after `window` good steps;
- clip_grad: the unscaled local gradients are clipped to global norm `clip_value`, before the mean across ranks;
- gradient_accumulation_steps M: grad / M is accumulated and the update happens every M-th step; the lr schedule
  still advances every finite step (MindCV's GradientAccumulation calls get_lr(), which advanced global_step in the
  MindSpore of its day; 2.10's no longer does). A non-finite step moves nothing: no sum, micro-step, lr step or EMA
  update (MindCV 0.3.0, f9478c6, mindcv/utils/train_step.py: all under `if not overflow:`). MindCV sums each
  rank's gradients locally and takes the mean across ranks only at the update; incv4 takes the mean every step (the
  same sums by linearity, one gradient all-reduce per step as without accumulation), so every collective stays
  outside the compiled branches, as in the plain step;
- ema: after every finite step (each accumulation step too, as MindCV's), ema = ema x d + weight x (1 - d) over
  all the network's parameters (BatchNorm statistics too) with d = ema_decay x (1 - exp(-updates / 2000)); named
  `ema.<parameter>` as MindCV's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, amp, nn, ops

from incv4.trainer.training.grad_reduce import DEFAULT_BUCKET_BYTES, bucketed_grad_reducer

# MindCV's DynamicLossScaleManager(init_loss_scale=loss_scale, scale_factor=2, scale_window=2000)
DYNAMIC_SCALE_FACTOR = 2
DYNAMIC_SCALE_WINDOW = 2000
EMA_WARMUP_UPDATES = 2000.0  # MindCV's ema temperature


@dataclass(frozen=True)
class StepExtras:
    """MindCV's train-step extras; the defaults are a plain step."""
    dynamic_loss_scale: bool = False
    clip_value: Optional[float] = None  # None: no clipping
    accumulation_steps: int = 1
    ema_decay: Optional[float] = None  # None: no EMA


class WithLoss(nn.Cell):
    """network + loss as one cell, keeping the network's parameter names (checkpoints load by name)."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self.net = network
        self.loss = loss_fn

    def construct(self, images, labels):
        return self.loss(self.net(images), labels)


class TrainStep(nn.Cell):
    def __init__(self, network, loss_fn, optimizer, loss_scale: float, rank_size: int, optimizer_loss_scale: float,
                 check_gradients: bool, grad_bucket_bytes: int, extras: StepExtras = StepExtras()):
        super().__init__(auto_prefix=False)
        self.with_loss = WithLoss(network, loss_fn)
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()
        self.parallel = rank_size > 1
        self.check_gradients = check_gradients or extras.dynamic_loss_scale
        if self.parallel:
            # the mean across ranks, as DistributedGradReducer(mean=True), in fused buckets. The only one: under
            # DATA_PARALLEL MindSpore adds none to a custom cell, graph mode too (2.10's TrainOneStepCell builds
            # its reducer in Python, mindspore/nn/wrap/cell_wrapper.py); test_step_extras_parallel.py checks it
            self.reducer = bucketed_grad_reducer(self.weights, rank_size, grad_bucket_bytes)
            self.all_reduce = ops.AllReduce()
        self._set_up_loss_scale(loss_scale, optimizer_loss_scale, extras.dynamic_loss_scale)
        self.clip = extras.clip_value is not None
        self.clip_value = float(extras.clip_value or 0.0)
        self._set_up_accumulation(extras.accumulation_steps)
        self._set_up_ema(network, extras.ema_decay)

    def _set_up_loss_scale(self, loss_scale: float, optimizer_loss_scale: float, dynamic: bool) -> None:
        self.dynamic = dynamic
        self.loss_scale = float(loss_scale)
        if dynamic:  # a Parameter, so a checkpoint carries the scale reached
            self.scale_sense = Parameter(Tensor(self.loss_scale, ms.float32), name="loss_scale")
            self.scale_update = nn.DynamicLossScaleUpdateCell(self.loss_scale, DYNAMIC_SCALE_FACTOR,
                                                              DYNAMIC_SCALE_WINDOW)
            self.unscale = 1.0
        else:
            self.unscale = float(optimizer_loss_scale) / self.loss_scale
        self.needs_unscale = self.unscale != 1.0

    def _set_up_accumulation(self, steps: int) -> None:
        self.accumulation_steps = int(steps)
        self.accumulate = self.accumulation_steps > 1
        if self.accumulate:
            self.accumulated = self.weights.clone("accumulated", init="zeros")
            self.micro_step = Parameter(Tensor([0], ms.int32), name="accumulation_micro_step", requires_grad=False)
            self.one_step = Tensor([1], ms.int32)
            self.zero_step = Tensor([0], ms.int32)

    def _set_up_ema(self, network, decay: Optional[float]) -> None:
        self.ema = decay is not None
        self.ema_decay = float(decay or 0.0)
        if self.ema:
            self.weights_all = ParameterTuple(list(network.get_parameters()))
            self.ema_weight = self.weights_all.clone("ema", init="same")
            for weight in self.ema_weight:
                weight.requires_grad = False
            self.updates = Parameter(Tensor(0.0, ms.float32), name="updates", requires_grad=False)

    def construct(self, images, labels, update, stop):
        loss = self.with_loss(images, labels)
        if self.dynamic:
            scale = self.scale_sense.value()
            sens = ops.ones_like(loss) * ops.cast(scale, loss.dtype)
        else:
            sens = ops.fill(loss.dtype, loss.shape, self.loss_scale)
        grads = self.grad(self.with_loss, self.weights)(images, labels, sens)
        if self.dynamic:
            grads = self.hyper_map(ops.partial(ops.mul, ops.reciprocal(scale)), grads)
        elif self.needs_unscale:
            grads = self.hyper_map(ops.partial(ops.mul, self.unscale), grads)
        if self.clip:
            grads = ops.clip_by_global_norm(grads, self.clip_value)
        if self.parallel:  # every step, outside the compiled branches (the module's note on accumulation)
            grads = self.reducer(grads)
        finite, stop = self._agree(grads, loss, stop)
        if self.dynamic:
            if update:
                loss = ops.depend(loss, self.scale_update(self.scale_sense, ops.logical_not(finite)))
        if ops.logical_and(finite, update):
            loss = ops.depend(loss, self._apply(grads))
        return loss, finite, stop

    def _agree(self, grads, loss, stop):
        """(finite on every rank, the stop flag summed over the ranks), in one small all-reduce where possible."""
        if self.check_gradients:
            if self.parallel:
                stop = self.all_reduce(stop)
            return amp.all_finite(grads), stop
        # one small all-reduce carries the stop flag and every rank's loss (a NaN anywhere -> NaN sum)
        shared = ops.stack([stop, ops.stop_gradient(loss)])
        if self.parallel:
            shared = self.all_reduce(shared)
        return ops.isfinite(shared[1]), shared[0]

    def _apply(self, grads):
        """The optimizer's update (every M-th step when accumulating), then the EMA (every step)."""
        if self.accumulate:
            done = self._accumulate(grads)
        else:
            done = self.optimizer(grads)
        if self.ema:
            done = ops.depend(done, self._ema_update())
        return done

    def _accumulate(self, grads):
        """Add grad / M (already the mean across ranks) to the sums; every M-th call, the update from them."""
        added = self.hyper_map(ops.partial(_add_share, float(self.accumulation_steps)), self.accumulated, grads)
        counted = ops.depend(ops.assign_add(self.micro_step, self.one_step), added)
        if counted >= self.accumulation_steps:
            updated = ops.depend(self.one_step, self.optimizer(self.accumulated))
            cleared = ops.depend(updated, self.hyper_map(ops.partial(_clear), self.accumulated))
            done = ops.depend(cleared, ops.assign(self.micro_step, self.zero_step))
        else:  # no update; the lr schedule still moves on a step, as MindCV's GradientAccumulation intends
            done = ops.depend(self.one_step, ops.assign_add(self.optimizer.global_step, self.one_step))
        return done

    def _ema_update(self):
        updates = ops.assign_add(self.updates, ops.ones_like(self.updates))
        decay = self.ema_decay * (1.0 - ops.exp(-updates / EMA_WARMUP_UPDATES))
        return self.hyper_map(ops.partial(_ema_step, decay), self.ema_weight, self.weights_all)

    def ema_weights_in(self):
        """For evaluation: the EMA weights copied into the network; call the returned function to put the trained
        weights back (MindCV's StateMonitor swaps them the same way)."""
        online = [Tensor(weight.asnumpy()) for weight in self.weights_all]
        for weight, ema in zip(self.weights_all, self.ema_weight):
            weight.set_data(Tensor(ema.asnumpy()))

        def restore():
            for weight, saved in zip(self.weights_all, online):
                weight.set_data(saved)
        return restore


def _add_share(steps, accumulated, grad):
    return ops.assign_add(accumulated, grad / steps)


def _clear(accumulated):
    return ops.assign(accumulated, ops.zeros_like(accumulated))


def _ema_step(decay, ema, weight):
    return ops.assign(ema, ema * decay + weight * (1.0 - decay))


def build_train_step(network, loss_fn, optimizer, loss_scale: float, rank_size: int,
                     optimizer_loss_scale: float = 1.0, check_gradients: bool = True,
                     grad_bucket_bytes: Optional[int] = None, extras: StepExtras = StepExtras()) -> TrainStep:
    """The train step, in training mode. Gradients are averaged in buckets of grad_bucket_bytes
    (grad_reduce.DEFAULT_BUCKET_BYTES when None)."""
    step = TrainStep(network, loss_fn, optimizer, loss_scale, rank_size, optimizer_loss_scale, check_gradients,
                     grad_bucket_bytes or DEFAULT_BUCKET_BYTES, extras)
    step.set_train(True)
    return step
