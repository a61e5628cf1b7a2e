"""Lever: nn.Momentum's update written as one Python loop over the parameters, which graph mode unrolls, instead
of nn.Momentum's `map_`/`hyper_map_reverse` over MultitypeFuncGraphs (`_apply_decay`, `_grad_scale`,
`_momentum_opt`).

Same state (it subclasses nn.Momentum: parameters, moments, global_step and their checkpoint names unchanged)
and the same kernels per parameter (Mul + AddN for the decayed ones, a Mul when the loss scale is not 1,
ApplyMomentum); only the front-end graph that the compiler has to specialise and inline is smaller. The question
it answers: how much of the single-process compile time is the optimizer's generic map machinery.
Answer (bench/FINDINGS.md, session 7): none; the unrolled loop compiles ~45 % slower. Not adopted.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


class UnrolledMomentum(nn.Momentum):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_group or self.dynamic_weight_decay or self.is_group_lr:
            raise ValueError("UnrolledMomentum covers grouped parameters with one lr and fixed weight decay")

    def construct(self, gradients):
        weight_decay = self.get_weight_decay()
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        success = True
        for weight, moment, gradient, decay, decay_flag in zip(self._parameters, self.moments, gradients,
                                                               weight_decay, self.decay_flags):
            if decay_flag:  # nn.Optimizer.decay_weight: wd was pre-multiplied by the loss scale
                gradient = ops.addn((weight * ops.cast(decay, weight.dtype), gradient))
            if self.need_scale:
                gradient = gradient * ops.cast(self.reciprocal_scale, gradient.dtype)
            success = ops.depend(success, self.opt(weight, moment, lr, gradient, self.momentum))
        return success


def create_optimizer(network, recipe, lr_schedule):
    """The lever in place of incv4.trainer.optim.create_optimizer for `opt: momentum` recipes."""
    from incv4.trainer.optim import optimizer_loss_scale, parameter_groups

    # graph mode unrolls the loop as a chain of calls, one per parameter: InceptionV4's 449 exceed the default
    # depth limit of 1000
    ms.set_recursion_limit(5000)
    groups = parameter_groups(network.trainable_params(), recipe["weight_decay"], recipe["filter_bias_and_bn"])
    return UnrolledMomentum(groups, learning_rate=lr_schedule, momentum=recipe["momentum"], weight_decay=0.0,
                            use_nesterov=recipe["use_nesterov"], loss_scale=optimizer_loss_scale(recipe))
