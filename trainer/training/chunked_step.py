"""The compiled train step of a chunk (chunks.py): the train step with the update on, and the chunk's tally kept on
the device by every step: the last loss, the chunk's non-finite steps, the non-finite steps in a row (carried
over chunks) and their worst run within the chunk, and the stop flag summed over the ranks. The host resets the
tally at a chunk's start and reads it once at its end."""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from incv4.trainer.training.chunks import Tally

LOSS, NONFINITE, IN_ROW, WORST_IN_ROW, STOP_ANY = range(5)
TALLY_SIZE = 5


class ChunkedStep(nn.Cell):
    """The train step with the update on and the chunk's tally kept on the device. Inputs (images, labels); the
    stop request is a Parameter the host sets (the sink feed can pass only the dataset's columns)."""

    def __init__(self, train_step):
        super().__init__(auto_prefix=False)
        self.train_step = train_step
        self.update = Tensor(True)
        self.stop_request = Parameter(Tensor(0.0, ms.float32), name="chunk_stop_request", requires_grad=False)
        self.tally = Parameter(Tensor(np.zeros(TALLY_SIZE, np.float32)), name="chunk_tally", requires_grad=False)
        self._requested = False

    def construct(self, images, labels):
        loss, finite, stop_any = self.train_step(images, labels, self.update, self.stop_request.value())
        tally = self.tally.value()
        bad = 1.0 - ops.cast(finite, ms.float32).reshape(())
        in_row = (tally[IN_ROW] + 1.0) * bad
        new = ops.stack([ops.cast(loss, ms.float32).reshape(()), tally[NONFINITE] + bad, in_row,
                         ops.maximum(tally[WORST_IN_ROW], in_row), ops.cast(stop_any, ms.float32).reshape(())])
        return ops.depend(loss, ops.assign(self.tally, new))

    def request_stop(self) -> None:
        """Carry this rank's stop request into the steps from now on (set once, on SIGTERM)."""
        if not self._requested:
            self._requested = True
            self.stop_request.set_data(Tensor(1.0, ms.float32))

    def start_chunk(self, in_row: int) -> None:
        """A fresh tally; the non-finite steps in a row carry over from the chunk before."""
        fresh = np.zeros(TALLY_SIZE, np.float32)
        fresh[IN_ROW] = fresh[WORST_IN_ROW] = in_row
        self.tally.set_data(Tensor(fresh))

    def read(self, steps: int, data_wait: float = 0.0) -> Tally:
        """The one read of the chunk: waits for its last step."""
        values = self.tally.asnumpy()
        return Tally(steps, float(values[LOSS]), int(values[NONFINITE]), int(values[IN_ROW]),
                     int(values[WORST_IN_ROW]), bool(values[STOP_ANY] > 0), data_wait)


def build_chunked_step(train_step) -> ChunkedStep:
    chunked = ChunkedStep(train_step)
    chunked.set_train(True)
    return chunked
