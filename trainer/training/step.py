"""The compiled data-parallel train step (graph mode on every device).

Inputs (images, labels, update, stop); outputs (loss, finite, stop_any). The loss is scaled by `loss_scale` for
the backward pass; the optimizer divides by `optimizer_loss_scale` (MindCV hands a fixed loss scale to the
optimizer) and the step unscales the rest. Gradients are averaged across ranks; the optimizer updates only when
the step is finite and `update` is set; the stop flag is summed across ranks, so every rank sees a SIGTERM any
rank got.

"Finite" means every gradient is finite (check_gradients, needed under float16 loss scaling, where the backward
pass can overflow while the loss does not), else every rank's loss is finite: in float32 a finite loss has finite
gradients in practice, and checking every gradient tensor is a large share of a small CPU step.
"""
from __future__ import annotations

from typing import Optional

from mindspore import amp, nn, ops

from incv4.trainer.training.grad_reduce import DEFAULT_BUCKET_BYTES, bucketed_grad_reducer


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
                 check_gradients: bool, grad_bucket_bytes: int):
        super().__init__(auto_prefix=False)
        self.with_loss = WithLoss(network, loss_fn)
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.loss_scale = float(loss_scale)
        self.unscale = float(optimizer_loss_scale) / float(loss_scale)
        self.needs_unscale = self.unscale != 1.0
        self.hyper_map = ops.HyperMap()
        self.parallel = rank_size > 1
        self.check_gradients = check_gradients
        if self.parallel:
            # the mean across ranks, as DistributedGradReducer(mean=True), in fused buckets
            self.reducer = bucketed_grad_reducer(self.weights, rank_size, grad_bucket_bytes)
            self.all_reduce = ops.AllReduce()

    def construct(self, images, labels, update, stop):
        loss = self.with_loss(images, labels)
        sens = ops.fill(loss.dtype, loss.shape, self.loss_scale)
        grads = self.grad(self.with_loss, self.weights)(images, labels, sens)
        if self.needs_unscale:
            grads = self.hyper_map(ops.partial(ops.mul, self.unscale), grads)
        if self.parallel:
            grads = self.reducer(grads)
        if self.check_gradients:
            if self.parallel:
                stop = self.all_reduce(stop)
            finite = amp.all_finite(grads)
        else:  # one small all-reduce carries the stop flag and every rank's loss (a NaN anywhere -> NaN sum)
            shared = ops.stack([stop, ops.stop_gradient(loss)])
            if self.parallel:
                shared = self.all_reduce(shared)
            stop = shared[0]
            finite = ops.isfinite(shared[1])
        if ops.logical_and(finite, update):
            loss = ops.depend(loss, self.optimizer(grads))
        return loss, finite, stop


def build_train_step(network, loss_fn, optimizer, loss_scale: float, rank_size: int,
                     optimizer_loss_scale: float = 1.0, check_gradients: bool = True,
                     grad_bucket_bytes: Optional[int] = None) -> TrainStep:
    """The train step, in training mode. Gradients are averaged in buckets of grad_bucket_bytes
    (grad_reduce.DEFAULT_BUCKET_BYTES when None)."""
    step = TrainStep(network, loss_fn, optimizer, loss_scale, rank_size, optimizer_loss_scale, check_gradients,
                     grad_bucket_bytes or DEFAULT_BUCKET_BYTES)
    step.set_train(True)
    return step
