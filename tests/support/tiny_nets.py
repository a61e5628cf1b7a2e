"""Helper (no tests here): the tiny MindSpore networks the trainer's unit tests build, and what the train-step tests
feed them and compare. It imports MindSpore: import it after `pytest.importorskip("mindspore")`."""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn

from training_nan import GAIN_NAME


class TinyConvNet(nn.Cell):
    """Convolution, BatchNorm, pooling and a classifier: parameters conv.weight, bn.*, fc.weight, fc.bias."""

    def __init__(self, classes=5, bn_momentum=0.9):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(4, momentum=bn_momentum)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(4, classes)

    def construct(self, x):
        return self.fc(self.flatten(self.pool(self.bn(self.conv(x)))))


class TinyDenseBn(nn.Cell):
    """A Dense layer and a BatchNorm: parameters layers.0.weight, layers.0.bias, layers.1.gamma, layers.1.beta
    (plus BN statistics)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.SequentialCell([nn.Dense(3, 2), nn.BatchNorm1d(2)])

    def construct(self, x):
        return self.layers(x)


def tiny_batch(index):
    """Batch `index` for TinyConvNet: 8 random 3x8x8 images and labels of 5 classes, the same for the same index."""
    rng = np.random.default_rng(index)
    return (ms.Tensor(rng.normal(size=(8, 3, 8, 8)).astype(np.float32)),
            ms.Tensor(rng.integers(0, 5, size=8).astype(np.int32)))


def network_values(cell, prefix=""):
    """Parameter values by name, those starting with `prefix`; MindCV's accumulation cell renames the weights
    `optimizer.<name>`, and the test's loss gain (training_nan.LossWithGain) is no network parameter."""
    values = {p.name.replace("optimizer.", ""): p.asnumpy().copy() for p in cell.get_parameters()}
    return {name: v for name, v in values.items() if name.startswith(prefix) and GAIN_NAME not in name}
