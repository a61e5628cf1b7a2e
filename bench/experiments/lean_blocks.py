"""Lever: incv4's InceptionV4 with BasicConv2d (conv -> BatchNorm -> ReLU, 149 of them) calling the three
primitives itself instead of through nn.Conv2d's, nn.BatchNorm2d's and nn.ReLU's construct.

Same parameters (the sub-cells still own them, so names and checkpoints are unchanged) and the same kernels;
what goes is the per-block front-end work graph mode does at compile time: three cell graphs to parse and
inline, and nn.BatchNorm2d's shape checks (`_check_input_dim`, a compile-time evaluated function, and the
rank-2/3 reshape branches). The question it answers: how much of the single-process compile time is that.
Answer (bench/FINDINGS.md, session 7): none measurable (33.6 vs 33.4 s). Not adopted.
"""
from __future__ import annotations

from mindspore import ops

from incv4.trainer import model


class LeanBasicConv2d(model.BasicConv2d):
    def construct(self, x):
        x = self.conv.conv2d(x, self.conv.weight)
        bn = self.bn
        if self.training:  # a Python bool: resolved when the graph compiles, as in nn.BatchNorm2d
            x = bn.bn_train(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)[0]
        else:
            x = bn.bn_infer(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)[0]
        return ops.relu(x)


def inception_v4(**kwargs):
    """incv4.trainer.model.inception_v4 built with LeanBasicConv2d (the model module looks BasicConv2d up by
    name while it builds; the original is put back afterwards)."""
    original = model.BasicConv2d
    model.BasicConv2d = LeanBasicConv2d
    try:
        return model.inception_v4(**kwargs)
    finally:
        model.BasicConv2d = original
