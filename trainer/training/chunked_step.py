"""The compiled train step of a chunk (chunks.py) and the chunk's one read.

ChunkedStep is the train step with the update on and this rank's stop request carried as a Parameter (the sink
feed can pass only the dataset's columns). Nothing else runs in the graph: the host keeps each step's outputs
(loss, finite, the stop flag summed over the ranks) as device tensors, without waiting for them, and `read_chunk`
reads what the chunk's Tally needs at the chunk's end: the host waits for the device once per chunk."""
from __future__ import annotations

from typing import Sequence

import mindspore as ms
from mindspore import Parameter, Tensor, nn

from incv4.trainer.training.chunks import Tally, tally_of


class ChunkedStep(nn.Cell):
    """The train step with the update on. Inputs (images, labels); outputs the train step's (loss, finite,
    stop_any)."""

    def __init__(self, train_step):
        super().__init__(auto_prefix=False)
        self.train_step = train_step
        self.update = Tensor(True)
        self.stop_request = Parameter(Tensor(0.0, ms.float32), name="chunk_stop_request", requires_grad=False)
        self._requested = False

    def construct(self, images, labels):
        return self.train_step(images, labels, self.update, self.stop_request.value())

    def request_stop(self) -> None:
        """Carry this rank's stop request into the steps from now on (set once, on SIGTERM)."""
        if not self._requested:
            self._requested = True
            self.stop_request.set_data(Tensor(1.0, ms.float32))


def read_chunk(outputs: Sequence[tuple], in_row: int, data_wait: float = 0.0) -> Tally:
    """The chunk's read, after its last step was launched: the last loss first (the one wait for the device), then the
    finished steps' finite flags and the last stop flag. Plain reads: gathering them with device ops first costs more
    than reading them (about 10 ms per chunk against 1 ms on the CPU, measured)."""
    if not outputs:
        return tally_of([], float("nan"), False, in_row, data_wait)
    loss, _, stop_any = outputs[-1]
    last_loss = float(loss.asnumpy())
    finite = [bool(step_finite.asnumpy()) for _, step_finite, _ in outputs]
    return tally_of(finite, last_loss, bool(stop_any.asnumpy() > 0), in_row, data_wait)


def build_chunked_step(train_step) -> ChunkedStep:
    chunked = ChunkedStep(train_step)
    chunked.set_train(True)
    return chunked
