"""SIGTERM (preemption, `incv4 suspend`, pod deletion) as a request: the loop finishes the current chunk of steps
(chunks.py), saves a checkpoint and exits with TERMINATED."""
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
            log("SIGTERM received: finishing the current steps, then saving a checkpoint")
        self.requested = True

    def agreed(self, stop_any: bool, rank_size: int) -> bool:
        """Whether the run stops after this chunk. Ranks agree through the all-reduced flag `stop_any` (a signal
        that lands during the chunk's last step is carried by the next chunk); a lone process stops at once."""
        return stop_any or (rank_size == 1 and self.requested)
