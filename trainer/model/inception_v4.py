"""InceptionV4 in MindSpore, parameter-for-parameter compatible with MindCV's `inception_v4`.

Szegedy, Ioffe, Vanhoucke, Alemi: "Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", AAAI 2017, https://arxiv.org/abs/1602.07261.

The cell tree mirrors mindcv/models/inceptionv4.py (mindcv 0.3.0) so every parameter has MindCV's name and shape
and MindCV's released checkpoint (inception_v4-db9c45b3.ckpt) loads by name with nothing missing or unexpected:
`features.<i>` is the stem (0), 4 x InceptionA (1-4), ReductionA (5), 7 x InceptionB (6-12), ReductionB (13) and
3 x InceptionC (14-16); then global average pooling, dropout and `classifier` (a Dense layer).
42,742,984 parameters including BatchNorm moving statistics, 42,679,816 trainable (at 1000 classes).

Differences from MindCV (none changes a parameter name or shape, nor any result at the defaults):
- conv weights are created with Xavier-uniform directly (MindCV creates them, then overwrites them with it);
- `bn_momentum` is a constructor argument (MindCV hard-codes 0.9997, which stays the default);
- InceptionA/B/C are marked `@lazy_inline(policy="front")`, which changes only how graph mode compiles them;
- `bn_beta_init` is a constructor argument (MindCV's BatchNorm beta starts at 0, which stays the default). A beta of
  1 makes every ReLU start near-linear, so the class signal survives the 17 blocks at init and a from-scratch run
  learns within a few dozen steps (the CPU demo recipe, configs/inception_v4_cpu_demo.yaml, uses it).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

from mindspore import Tensor, lazy_inline, nn, ops
from mindspore.common.initializer import Constant, XavierUniform, initializer

__all__ = ["InceptionV4", "inception_v4", "CLASSIFIER_PARAMS", "NUM_FEATURES", "MIN_IMAGE_SIZE"]

# The classifier's parameters: re-initialise these (and load the rest) when num_classes differs from a checkpoint's.
CLASSIFIER_PARAMS = ("classifier.weight", "classifier.bias")
# Width of the pooled features that feed the classifier.
NUM_FEATURES = 1536
# Smallest input side for which every valid-padded stride-2 stage still has a spatial extent >= 1.
MIN_IMAGE_SIZE = 75

BN_EPS = 0.001  # MindCV's (and TF-slim's) BatchNorm epsilon for InceptionV4
BN_MOMENTUM = 0.9997  # MindCV's moving-average momentum
DROP_RATE = 0.2  # MindCV's InceptionV4 default (mindcv/models/inceptionv4.py)

# The 14 repeated blocks (InceptionA/B/C) are compiled once each as a reusable subgraph and then inlined ("front"):
# graph mode otherwise parses and optimises 14 inlined copies, so compiling takes clearly less time with the step
# unchanged (bench/FINDINGS.md). MindSpore's default policy (no inlining) fails to compile on the CPU backend;
# "front" works there (MindSpore documents lazy_inline for Ascend, where it is the recommended compile-time lever).
REPEATED_BLOCK_INLINE = "front"


class BasicConv2d(nn.Cell):
    """Conv (no bias) -> BatchNorm -> ReLU, MindCV's building block. Parameter names: conv.weight, bn.{gamma,
    beta,moving_mean,moving_variance}."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Tuple[int, int]] = 1,
                 stride: int = 1, padding: int = 0, pad_mode: str = "same",
                 bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad_mode=pad_mode, padding=padding,
                              weight_init=XavierUniform())
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum)
        self.relu = nn.ReLU()

    def construct(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _avg_pool_3x3() -> nn.Cell:
    # 3x3 stride-1 average pooling that keeps the spatial size (the pooling branch of the Inception blocks)
    return nn.AvgPool2d(kernel_size=3, stride=1, pad_mode="same")


def _max_pool_3x3_s2() -> nn.Cell:
    return nn.MaxPool2d(kernel_size=3, stride=2)


class Stem(nn.Cell):
    """299x299x3 -> 35x35x384 (paper fig. 3). Concatenations are along channels (NCHW axis 1)."""

    def __init__(self, in_channels: int, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.conv2d_1a_3x3 = BasicConv2d(in_channels, 32, 3, stride=2, pad_mode="valid", bn_momentum=m)
        self.conv2d_2a_3x3 = BasicConv2d(32, 32, 3, pad_mode="valid", bn_momentum=m)
        self.conv2d_2b_3x3 = BasicConv2d(32, 64, 3, pad_mode="pad", padding=1, bn_momentum=m)

        self.mixed_3a_branch_0 = _max_pool_3x3_s2()
        self.mixed_3a_branch_1 = BasicConv2d(64, 96, 3, stride=2, pad_mode="valid", bn_momentum=m)

        self.mixed_4a_branch_0 = nn.SequentialCell([
            BasicConv2d(160, 64, 1, bn_momentum=m),
            BasicConv2d(64, 96, 3, pad_mode="valid", bn_momentum=m),
        ])
        self.mixed_4a_branch_1 = nn.SequentialCell([
            BasicConv2d(160, 64, 1, bn_momentum=m),
            BasicConv2d(64, 64, (1, 7), bn_momentum=m),
            BasicConv2d(64, 64, (7, 1), bn_momentum=m),
            BasicConv2d(64, 96, 3, pad_mode="valid", bn_momentum=m),
        ])

        self.mixed_5a_branch_0 = BasicConv2d(192, 192, 3, stride=2, pad_mode="valid", bn_momentum=m)
        self.mixed_5a_branch_1 = _max_pool_3x3_s2()

    def construct(self, x: Tensor) -> Tensor:
        x = self.conv2d_1a_3x3(x)  # 149 x 149 x 32
        x = self.conv2d_2a_3x3(x)  # 147 x 147 x 32
        x = self.conv2d_2b_3x3(x)  # 147 x 147 x 64
        x = ops.concat((self.mixed_3a_branch_0(x), self.mixed_3a_branch_1(x)), 1)  # 73 x 73 x 160
        x = ops.concat((self.mixed_4a_branch_0(x), self.mixed_4a_branch_1(x)), 1)  # 71 x 71 x 192
        return ops.concat((self.mixed_5a_branch_0(x), self.mixed_5a_branch_1(x)), 1)  # 35 x 35 x 384


class InceptionA(nn.Cell):
    """35x35x384 -> 35x35x384 (paper fig. 4)."""

    @lazy_inline(policy=REPEATED_BLOCK_INLINE)
    def __init__(self, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.branch_0 = BasicConv2d(384, 96, 1, bn_momentum=m)
        self.branch_1 = nn.SequentialCell([
            BasicConv2d(384, 64, 1, bn_momentum=m),
            BasicConv2d(64, 96, 3, pad_mode="pad", padding=1, bn_momentum=m),
        ])
        self.branch_2 = nn.SequentialCell([
            BasicConv2d(384, 64, 1, bn_momentum=m),
            BasicConv2d(64, 96, 3, pad_mode="pad", padding=1, bn_momentum=m),
            BasicConv2d(96, 96, 3, pad_mode="pad", padding=1, bn_momentum=m),
        ])
        self.branch_3 = nn.SequentialCell([
            _avg_pool_3x3(),
            BasicConv2d(384, 96, 1, bn_momentum=m),
        ])

    def construct(self, x: Tensor) -> Tensor:
        return ops.concat((self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)), 1)


class ReductionA(nn.Cell):
    """35x35x384 -> 17x17x1024 (paper fig. 7, k=192 l=224 m=256 n=384)."""

    def __init__(self, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.branch_0 = BasicConv2d(384, 384, 3, stride=2, pad_mode="valid", bn_momentum=m)
        self.branch_1 = nn.SequentialCell([
            BasicConv2d(384, 192, 1, bn_momentum=m),
            BasicConv2d(192, 224, 3, pad_mode="pad", padding=1, bn_momentum=m),
            BasicConv2d(224, 256, 3, stride=2, pad_mode="valid", bn_momentum=m),
        ])
        self.branch_2 = _max_pool_3x3_s2()

    def construct(self, x: Tensor) -> Tensor:
        return ops.concat((self.branch_0(x), self.branch_1(x), self.branch_2(x)), 1)


class InceptionB(nn.Cell):
    """17x17x1024 -> 17x17x1024 (paper fig. 5)."""

    @lazy_inline(policy=REPEATED_BLOCK_INLINE)
    def __init__(self, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.branch_0 = BasicConv2d(1024, 384, 1, bn_momentum=m)
        self.branch_1 = nn.SequentialCell([
            BasicConv2d(1024, 192, 1, bn_momentum=m),
            BasicConv2d(192, 224, (1, 7), bn_momentum=m),
            BasicConv2d(224, 256, (7, 1), bn_momentum=m),
        ])
        self.branch_2 = nn.SequentialCell([
            BasicConv2d(1024, 192, 1, bn_momentum=m),
            BasicConv2d(192, 192, (7, 1), bn_momentum=m),
            BasicConv2d(192, 224, (1, 7), bn_momentum=m),
            BasicConv2d(224, 224, (7, 1), bn_momentum=m),
            BasicConv2d(224, 256, (1, 7), bn_momentum=m),
        ])
        self.branch_3 = nn.SequentialCell([
            _avg_pool_3x3(),
            BasicConv2d(1024, 128, 1, bn_momentum=m),
        ])

    def construct(self, x: Tensor) -> Tensor:
        return ops.concat((self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)), 1)


class ReductionB(nn.Cell):
    """17x17x1024 -> 8x8x1536 (paper fig. 8)."""

    def __init__(self, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.branch_0 = nn.SequentialCell([
            BasicConv2d(1024, 192, 1, bn_momentum=m),
            BasicConv2d(192, 192, 3, stride=2, pad_mode="valid", bn_momentum=m),
        ])
        self.branch_1 = nn.SequentialCell([
            BasicConv2d(1024, 256, 1, bn_momentum=m),
            BasicConv2d(256, 256, (1, 7), bn_momentum=m),
            BasicConv2d(256, 320, (7, 1), bn_momentum=m),
            BasicConv2d(320, 320, 3, stride=2, pad_mode="valid", bn_momentum=m),
        ])
        self.branch_2 = _max_pool_3x3_s2()

    def construct(self, x: Tensor) -> Tensor:
        return ops.concat((self.branch_0(x), self.branch_1(x), self.branch_2(x)), 1)


class InceptionC(nn.Cell):
    """8x8x1536 -> 8x8x1536 (paper fig. 6). Branches 1 and 2 fork into a 1x3 and a 3x1 conv each."""

    @lazy_inline(policy=REPEATED_BLOCK_INLINE)
    def __init__(self, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        m = bn_momentum
        self.branch_0 = BasicConv2d(1536, 256, 1, bn_momentum=m)

        self.branch_1 = BasicConv2d(1536, 384, 1, bn_momentum=m)
        self.branch_1_1 = BasicConv2d(384, 256, (1, 3), bn_momentum=m)
        self.branch_1_2 = BasicConv2d(384, 256, (3, 1), bn_momentum=m)

        self.branch_2 = nn.SequentialCell([
            BasicConv2d(1536, 384, 1, bn_momentum=m),
            BasicConv2d(384, 448, (3, 1), bn_momentum=m),
            BasicConv2d(448, 512, (1, 3), bn_momentum=m),
        ])
        self.branch_2_1 = BasicConv2d(512, 256, (1, 3), bn_momentum=m)
        self.branch_2_2 = BasicConv2d(512, 256, (3, 1), bn_momentum=m)

        self.branch_3 = nn.SequentialCell([
            _avg_pool_3x3(),
            BasicConv2d(1536, 256, 1, bn_momentum=m),
        ])

    def construct(self, x: Tensor) -> Tensor:
        x1 = self.branch_1(x)
        x2 = self.branch_2(x)
        # one concatenation instead of MindCV's three: the channel order is the same
        return ops.concat((self.branch_0(x), self.branch_1_1(x1), self.branch_1_2(x1),
                           self.branch_2_1(x2), self.branch_2_2(x2), self.branch_3(x)), 1)


class InceptionV4(nn.Cell):
    """InceptionV4 classifier (NCHW float input of side >= 75; logits of shape [N, num_classes]).

    Args:
        num_classes: number of classes. Default: 1000.
        in_channels: input channels. Default: 3.
        drop_rate: dropout probability before the classifier. Default: 0.2.
        bn_momentum: BatchNorm moving-average momentum. Default: 0.9997 (MindCV's).
        bn_beta_init: initial value of every BatchNorm beta (shift). Default: 0.0 (MindCV's).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, drop_rate: float = DROP_RATE,
                 bn_momentum: float = BN_MOMENTUM, bn_beta_init: float = 0.0) -> None:
        super().__init__()
        m = bn_momentum
        blocks = [Stem(in_channels, bn_momentum=m)]
        blocks += [InceptionA(bn_momentum=m) for _ in range(4)]
        blocks.append(ReductionA(bn_momentum=m))
        blocks += [InceptionB(bn_momentum=m) for _ in range(7)]
        blocks.append(ReductionB(bn_momentum=m))
        blocks += [InceptionC(bn_momentum=m) for _ in range(3)]
        self.features = nn.SequentialCell(blocks)
        self.num_features = NUM_FEATURES
        self.dropout = nn.Dropout(p=drop_rate)
        self.classifier = nn.Dense(NUM_FEATURES, num_classes)
        if bn_beta_init != 0.0:
            _set_bn_beta(self, bn_beta_init)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        x = ops.mean(x, axis=(2, 3))  # global average pooling
        return self.classifier(self.dropout(x))

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _set_bn_beta(network: nn.Cell, value: float) -> None:
    for _, cell in network.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.beta.set_data(initializer(Constant(value), cell.beta.shape, cell.beta.dtype))


def inception_v4(num_classes: int = 1000, in_channels: int = 3, drop_rate: Optional[float] = DROP_RATE,
                 bn_momentum: float = BN_MOMENTUM, bn_beta_init: float = 0.0) -> InceptionV4:
    """InceptionV4 with MindCV's parameter names and shapes; see `InceptionV4`. drop_rate None is the default,
    as MindCV's create_model drops None arguments (a recipe's `drop_rate: null`)."""
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"inception_v4: {name} must be a positive integer, got {value!r}")
    if drop_rate is None:
        drop_rate = DROP_RATE
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"inception_v4: drop_rate must be in [0, 1), got {drop_rate!r}")
    if not 0.0 < bn_momentum < 1.0:
        raise ValueError(f"inception_v4: bn_momentum must be in (0, 1), got {bn_momentum!r}")
    if not -10.0 <= bn_beta_init <= 10.0:
        raise ValueError(f"inception_v4: bn_beta_init must be in [-10, 10], got {bn_beta_init!r}")
    return InceptionV4(num_classes=num_classes, in_channels=in_channels, drop_rate=drop_rate,
                       bn_momentum=bn_momentum, bn_beta_init=bn_beta_init)
