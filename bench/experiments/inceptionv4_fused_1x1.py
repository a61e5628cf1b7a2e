# EXPERIMENT (not used by incv4): engineer 1's InceptionV4 with sibling 1x1 convs fused. Inception A/B/C read one
# input through several 1x1 convs; here they run as one conv over the concatenated weights, then split. Same
# parameter names and shapes as trainer/model.py; identical outputs in PyNative and graph mode (max diff 0.0);
# gradients within ~3e-6 relative. One noisy A/B at 75px batch 8: 3305 -> 2191 ms/step. Needs an alternating
# timing (bench/levers.py) before it replaces trainer/model.py.
"""trainer/model.py's InceptionV4 with only the Inception A/B/C blocks' forward passes changed: each block's sibling
1x1 convs (the ones reading the block input) run as one conv. Every cell, parameter name and shape comes from
trainer/model.py's classes, so checkpoints are interchangeable."""
from __future__ import annotations

from typing import Tuple

from mindspore import Tensor, nn, ops

from incv4.trainer import model


def _bn_relu(block: model.BasicConv2d, y: Tensor) -> Tensor:
    """A BasicConv2d after its conv (for a conv computed jointly with sibling branches)."""
    return block.relu(block.bn(y))


class SiblingPointwise(nn.Cell):
    """Runs several 1x1 stride-1 convs that read the same input as ONE conv over their concatenated weights, then
    splits the result per branch. Owns no parameters: the weights stay in each branch's BasicConv2d (so names
    and checkpoints are unchanged); only the matrix multiply is shared, which reads the input once and gives the
    backward pass one input-gradient instead of a sum of several."""

    def __init__(self, out_channels: Tuple[int, ...]) -> None:
        super().__init__()
        self.conv = ops.Conv2D(out_channel=sum(out_channels), kernel_size=1)
        self.sizes = tuple(out_channels)

    def construct(self, x: Tensor, weights: Tuple[Tensor, ...]):
        y = self.conv(x, ops.concat(weights, 0))
        return ops.split(y, self.sizes, 1)


class InceptionA(model.InceptionA):
    def __init__(self, bn_momentum: float = model.BN_MOMENTUM) -> None:
        super().__init__(bn_momentum)
        self.pointwise = SiblingPointwise((96, 64, 64))

    def construct(self, x: Tensor) -> Tensor:
        b1, b2 = self.branch_1, self.branch_2
        y0, y1, y2 = self.pointwise(x, (self.branch_0.conv.weight, b1[0].conv.weight, b2[0].conv.weight))
        x0 = _bn_relu(self.branch_0, y0)
        x1 = b1[1](_bn_relu(b1[0], y1))
        x2 = b2[2](b2[1](_bn_relu(b2[0], y2)))
        return ops.concat((x0, x1, x2, self.branch_3(x)), 1)


class InceptionB(model.InceptionB):
    def __init__(self, bn_momentum: float = model.BN_MOMENTUM) -> None:
        super().__init__(bn_momentum)
        self.pointwise = SiblingPointwise((384, 192, 192))

    def construct(self, x: Tensor) -> Tensor:
        b1, b2 = self.branch_1, self.branch_2
        y0, y1, y2 = self.pointwise(x, (self.branch_0.conv.weight, b1[0].conv.weight, b2[0].conv.weight))
        x0 = _bn_relu(self.branch_0, y0)
        x1 = b1[2](b1[1](_bn_relu(b1[0], y1)))
        x2 = b2[4](b2[3](b2[2](b2[1](_bn_relu(b2[0], y2)))))
        return ops.concat((x0, x1, x2, self.branch_3(x)), 1)


class InceptionC(model.InceptionC):
    def __init__(self, bn_momentum: float = model.BN_MOMENTUM) -> None:
        super().__init__(bn_momentum)
        self.pointwise = SiblingPointwise((256, 384, 384))

    def construct(self, x: Tensor) -> Tensor:
        b2 = self.branch_2
        y0, y1, y2 = self.pointwise(x, (self.branch_0.conv.weight, self.branch_1.conv.weight, b2[0].conv.weight))
        x1 = _bn_relu(self.branch_1, y1)
        x2 = b2[2](b2[1](_bn_relu(b2[0], y2)))
        # one concatenation instead of MindCV's three: the channel order is the same
        return ops.concat((_bn_relu(self.branch_0, y0), self.branch_1_1(x1), self.branch_1_2(x1),
                           self.branch_2_1(x2), self.branch_2_2(x2), self.branch_3(x)), 1)


class InceptionV4(model.InceptionV4):
    """model.InceptionV4 (its head, forward and attributes) over the fused Inception blocks."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.2,
                 bn_momentum: float = model.BN_MOMENTUM) -> None:
        nn.Cell.__init__(self)  # not model.InceptionV4.__init__: it would build the unfused blocks first
        m = bn_momentum
        blocks = [model.Stem(in_channels, bn_momentum=m)]
        blocks += [InceptionA(bn_momentum=m) for _ in range(4)]
        blocks.append(model.ReductionA(bn_momentum=m))
        blocks += [InceptionB(bn_momentum=m) for _ in range(7)]
        blocks.append(model.ReductionB(bn_momentum=m))
        blocks += [InceptionC(bn_momentum=m) for _ in range(3)]
        self.features = nn.SequentialCell(blocks)
        self.num_features = model.NUM_FEATURES
        self.dropout = nn.Dropout(p=drop_rate)
        self.classifier = nn.Dense(model.NUM_FEATURES, num_classes)


def inception_v4(num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.2,
                 bn_momentum: float = model.BN_MOMENTUM) -> InceptionV4:
    """The fused variant (arguments as model.inception_v4's, unchecked: an experiment, not an API)."""
    return InceptionV4(num_classes=num_classes, in_channels=in_channels, drop_rate=drop_rate or 0.0,
                       bn_momentum=bn_momentum)
