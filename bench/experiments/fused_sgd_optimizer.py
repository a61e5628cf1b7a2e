"""Lever: momentum SGD whose weight decay runs inside the update kernel (`ops.SGD`, one kernel per decayed
parameter) instead of nn.Momentum's Mul + AddN + ApplyMomentum (three kernels and five passes over the weights).

Same update as MindCV's momentum with `weight_decay_filter: norm_and_bias`:
    v = momentum * v + (g + wd * w);  w = w - lr * v      (ops.SGD with dampening 0, nesterov off)
Undecayed parameters (BatchNorm gamma/beta, biases) keep ApplyMomentum. ops.SGD needs a `stat` tensor of the
parameter's shape (its "first step" flag, kept at 0 here so the first step is v = g + wd*w, as ApplyMomentum's).
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

_decayed_step = ops.MultitypeFuncGraph("decayed_step")
_plain_step = ops.MultitypeFuncGraph("plain_step")


@_decayed_step.register("Tensor", "Tensor", "Function", "Tensor", "Tensor", "Tensor", "Tensor")
def _run_sgd(momentum, lr, sgd, gradient, weight, moment, stat):
    return ops.depend(True, sgd(weight, gradient, lr, moment, momentum, stat))


@_plain_step.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _run_momentum(apply_momentum, momentum, lr, gradient, weight, moment):
    return ops.depend(True, apply_momentum(weight, moment, lr, gradient, momentum))


class DecayInKernelMomentum(nn.Optimizer):
    def __init__(self, decayed, undecayed, learning_rate, momentum: float, weight_decay: float,
                 loss_scale: float = 1.0):
        params = list(decayed) + list(undecayed)  # the train step's gradients come in this order
        super().__init__(learning_rate, params, 0.0, loss_scale)
        self.n_decayed = len(decayed)
        self.momentum = Parameter(Tensor(momentum, ms.float32), name="momentum")
        self.moments = self._parameters.clone(prefix="moments", init="zeros")
        self.stats = ms.ParameterTuple(
            Parameter(ops.zeros(p.shape, p.dtype), name=f"sgd_stat.{p.name}", requires_grad=False)
            for p in decayed)
        self.sgd = ops.SGD(0.0, float(weight_decay), False)
        self.apply_momentum = ops.ApplyMomentum()
        self.hyper_map = ops.HyperMap()

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        n = self.n_decayed
        params, moments = self._parameters, self.moments
        done_decayed = self.hyper_map(ops.partial(_decayed_step, self.momentum, lr, self.sgd),
                                      gradients[:n], params[:n], moments[:n], self.stats)
        done_plain = self.hyper_map(ops.partial(_plain_step, self.apply_momentum, self.momentum, lr),
                                    gradients[n:], params[n:], moments[n:])
        return ops.depend(done_decayed, done_plain)


def create_optimizer(network, recipe, lr_schedule):
    """The lever in place of incv4.trainer.optim.create_optimizer for the shipped recipes (opt momentum, no
    Nesterov, filter_bias_and_bn on); other recipe options are not handled here."""
    from incv4.trainer.optim import optimizer_loss_scale, parameter_groups

    decayed, undecayed, _ = parameter_groups(network.trainable_params(), recipe["weight_decay"], True)
    return DecayInKernelMomentum(decayed["params"], undecayed["params"], lr_schedule, recipe["momentum"],
                                 recipe["weight_decay"], optimizer_loss_scale(recipe))
