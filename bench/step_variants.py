"""Local copies of incv4's train step (trainer/train.py build_train_step) with one thing changed each, to find what
its extra cost over MindSpore's plain TrainOneStepCell is (a lever experiment; see bench/FINDINGS.md).

  trainer         as train.py builds it: all_finite over every gradient + `if finite and update:` in the graph
  loss_check      the same `if`, but `finite` = isfinite(loss) (one scalar) instead of all_finite(grads)
  no_branch       all_finite computed and returned, the update always applied (no control flow)
  no_check        neither: loss_gain/stop plumbing kept, update always applied
All take (images, labels, loss_gain, update, stop) and return (loss, finite, stop) like train.py's step."""
from __future__ import annotations


def build(network, loss_fn, optimizer, variant: str):
    from mindspore import amp, nn, ops

    class _WithLoss(nn.Cell):
        def __init__(self, net, loss):
            super().__init__(auto_prefix=False)
            self.net = net
            self.loss = loss

        def construct(self, images, labels, loss_gain):
            return self.loss(self.net(images), labels) * loss_gain

    class Step(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.with_loss = _WithLoss(network, loss_fn)
            self.optimizer = optimizer
            self.weights = optimizer.parameters
            self.grad = ops.GradOperation(get_by_list=True, sens_param=True)

        def construct(self, images, labels, loss_gain, update, stop):
            loss = self.with_loss(images, labels, loss_gain)
            sens = ops.fill(loss.dtype, loss.shape, 1.0)
            grads = self.grad(self.with_loss, self.weights)(images, labels, loss_gain, sens)
            if variant == "trainer":
                finite = amp.all_finite(grads)
                if ops.logical_and(finite, update):
                    loss = ops.depend(loss, self.optimizer(grads))
            elif variant == "loss_check":
                finite = ops.isfinite(loss)
                if ops.logical_and(finite, update):
                    loss = ops.depend(loss, self.optimizer(grads))
            elif variant == "no_branch":
                finite = amp.all_finite(grads)
                loss = ops.depend(loss, self.optimizer(grads))
            else:
                finite = update
                loss = ops.depend(loss, self.optimizer(grads))
            return loss, finite, stop

    step = Step()
    step.set_train(True)
    return step
