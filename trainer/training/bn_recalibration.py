"""BatchNorm recalibration before an evaluation (`bn_recalibrate_steps: N`; 0 = off = MindCV).

MindCV's momentum 0.9997 barely moves the moving statistics in a short run, so a short run would evaluate with
statistics still near their initial values. Recalibration re-estimates them from N train-mode forward passes over
training batches (no update) by solving the moving-average recurrence for the average of those batches'
statistics. It needs no second compiled graph and leaves MindCV's momentum untouched for training."""
from __future__ import annotations

from typing import Callable, Iterable


class BatchNormRecalibrator:
    """Each pass moves a statistic m by m <- mu*m + (1-mu)*b (b: that batch's statistic, mu: the layer's momentum).
    After N passes from m0: mN = mu^N m0 + (1-mu) sum_k mu^(N-k) b_k, so the average of the batches' statistics
    (weighted mu^(N-k), near-uniform for mu near 1) is (mN - mu^N m0) / (1 - mu^N), exact for any momentum."""

    def __init__(self, network):
        from mindspore import nn

        self.layers = [cell for _, cell in network.cells_and_names()
                       if isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d))]

    def snapshot(self):
        import numpy as np

        return [(layer.moving_mean.asnumpy().astype(np.float64), layer.moving_variance.asnumpy().astype(np.float64))
                for layer in self.layers]

    def solve(self, before, passes: int) -> None:
        import mindspore as ms
        import numpy as np

        for layer, (mean0, var0) in zip(self.layers, before):
            mu = 1.0 - float(layer.momentum)  # MindSpore stores 1 - momentum on the cell
            keep = mu ** passes
            for param, start in ((layer.moving_mean, mean0), (layer.moving_variance, var0)):
                now = param.asnumpy().astype(np.float64)
                estimate = (now - keep * start) / (1.0 - keep)
                param.set_data(ms.Tensor(estimate.astype(np.float32)))


def recalibrate(recalibrator: BatchNormRecalibrator, train_step, batches: Callable[[int], Iterable],
                passes: int) -> None:
    """`passes` forward passes of the train step with the update off; `batches(round)` gives training batches
    (a small shard may hold fewer batches than passes: the next round goes through it again)."""
    import mindspore as ms
    import numpy as np

    before = recalibrator.snapshot()
    no_update = ms.Tensor(False)
    no_stop = ms.Tensor(np.float32(0.0))
    done = round_ = 0
    while done < passes:
        for images, labels in batches(round_):
            train_step(images, labels, no_update, no_stop)  # the forward moves the BN statistics
            done += 1
            if done == passes:
                break
        round_ += 1
    recalibrator.solve(before, passes)
