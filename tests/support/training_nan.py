"""NaN losses on demand, for tests of what the product does with a non-finite step: a loss cell that multiplies
the recipe's loss by a gain the test sets (1.0, or NaN for a step that must go non-finite). The gain is a
Parameter, so the compiled graph reads its current value at every call."""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn

GAIN_NAME = "test_loss_gain"


class LossWithGain(nn.Cell):
    def __init__(self, loss_fn):
        super().__init__(auto_prefix=False)
        self.loss = loss_fn
        self.gain = Parameter(Tensor(np.float32(1.0)), name=GAIN_NAME, requires_grad=False)

    def set_nan(self, nan: bool) -> None:
        self.gain.set_data(Tensor(np.float32(np.nan if nan else 1.0)))

    def construct(self, logits, labels):
        return self.loss(logits, labels) * self.gain
