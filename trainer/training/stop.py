"""SIGTERM (preemption, `incv4 suspend`, pod deletion) as a request: the loop finishes the current step, saves a
checkpoint and exits with TERMINATED."""
from __future__ import annotations

import signal

from incv4.trainer.training.console import log


class StopRequest:
    def __init__(self):
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        if not self.requested:
            log("SIGTERM received: finishing the current step, then saving a checkpoint")
        self.requested = True

    def flag(self):
        """This rank's stop flag as the train step's `stop` input (1.0 once SIGTERM arrived)."""
        import mindspore as ms
        import numpy as np

        return ms.Tensor(np.float32(1.0 if self.requested else 0.0))

    def agreed(self, stop_any, rank_size: int) -> bool:
        """Whether the run stops after this step. Ranks agree through the all-reduced flag `stop_any` (a signal
        that lands during a step is carried by the next one); a lone process stops at once."""
        return float(stop_any.asnumpy()) > 0 or (rank_size == 1 and self.requested)
