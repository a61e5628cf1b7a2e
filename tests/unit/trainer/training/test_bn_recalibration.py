"""BatchNorm recalibration: solving the moving-average recurrence recovers the batches' statistics, and
`recalibrate` runs exactly the asked number of forward passes with the update off, going round a short shard."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from incv4.trainer.training.bn_recalibration import BatchNormRecalibrator, recalibrate  # noqa: E402


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



def test_recalibrate_goes_round_a_short_shard_with_the_update_off():
    class FakeRecalibrator:
        def snapshot(self):
            return "before"

        def solve(self, before, passes):
            self.solved = (before, passes)

    calls, rounds = [], []

    def batches(round_):
        rounds.append(round_)
        return [(f"images{round_}.{i}", f"labels{round_}.{i}") for i in range(2)]  # a shard of 2 batches

    def train_step(images, labels, update, stop):
        calls.append((images, bool(update.asnumpy()), float(stop.asnumpy())))

    recalibrator = FakeRecalibrator()
    recalibrate(recalibrator, train_step, batches, passes=5)
    assert [c[0] for c in calls] == ["images0.0", "images0.1", "images1.0", "images1.1", "images2.0"]
    assert all(update is False and stop == 0.0 for _, update, stop in calls)
    assert rounds == [0, 1, 2]
    assert recalibrator.solved == ("before", 5)
