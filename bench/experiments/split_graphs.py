"""Lever: the train step as two compiled graphs (forward + backward returning the gradients; the optimizer's
update) instead of one (MindSpore's TrainOneStepCell, lever `plain_step`, is the like-for-like reference).

Same computation; the gradients cross from one graph to the other as 449 output tensors. The question it
answers: does MindSpore's compile cost grow faster than the graph, so that two halves compile in less time than
the whole (the costly passes, renormalize and the substitution rounds, run over the whole inlined graph)?
Answer (bench/FINDINGS.md, session 7): no (34.9 vs 33.8 s). Not adopted.
"""
from __future__ import annotations

from mindspore import nn, ops


class LossAndGrads(nn.Cell):
    def __init__(self, net, loss_fn, weights):
        super().__init__(auto_prefix=False)  # as TrainOneStepCell: the parameters keep their names
        self.net_with_loss = nn.WithLossCell(net, loss_fn)
        self.weights = weights
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, images, labels):
        loss = self.net_with_loss(images, labels)
        grads = self.grad(self.net_with_loss, self.weights)(images, labels)
        return loss, grads


class SplitStep:
    """step(images, labels) -> loss: one call of each graph (each compiles on its first call)."""

    def __init__(self, net, loss_fn, optimizer):
        self.loss_and_grads = LossAndGrads(net, loss_fn, optimizer.parameters)
        self.optimizer = optimizer

    def set_train(self, mode: bool = True):
        self.loss_and_grads.set_train(mode)
        return self

    def __call__(self, images, labels):
        loss, grads = self.loss_and_grads(images, labels)
        self.optimizer(grads)
        return loss
