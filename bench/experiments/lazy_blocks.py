"""Lever: the repeated Inception blocks (4 x InceptionA, 7 x InceptionB, 3 x InceptionC) marked with MindSpore's
`@lazy_inline(policy="front")`, so graph mode compiles each block's graph once as a reusable subgraph and inlines
it afterwards, instead of parsing and optimising 14 inlined copies.

MindSpore documents lazy_inline as Ascend-only. On the CPU backend the default policy fails at compile ("Input[0]
must be a Primitive ValueNode", segment_runner.cc; jit levels default, O0 and O1 alike); policy "front" compiles
and runs. Same cells, same parameters (names and values), same kernels after the inlining. The question it answers:
does it shorten the single-process compile toward the 0.8x-MindCV target (bench/FINDINGS.md, session 8)?
"""
from __future__ import annotations

from mindspore import lazy_inline

from incv4.trainer import model

REPEATED_BLOCKS = ("InceptionA", "InceptionB", "InceptionC")


def _lazy(block):
    class LazyBlock(block):
        @lazy_inline(policy="front")
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    LazyBlock.__name__ = LazyBlock.__qualname__ = "Lazy" + block.__name__
    return LazyBlock


def inception_v4(**kwargs):
    """incv4.trainer.model.inception_v4 built with the lazy blocks (the model module looks the block classes up by
    name while it builds; the originals are put back afterwards)."""
    originals = {name: getattr(model, name) for name in REPEATED_BLOCKS}
    try:
        for name, block in originals.items():
            setattr(model, name, _lazy(block))
        return model.inception_v4(**kwargs)
    finally:
        for name, block in originals.items():
            setattr(model, name, block)
