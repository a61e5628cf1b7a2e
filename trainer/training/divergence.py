"""The divergence guard: a non-finite step (its update was skipped by the train step) is a warning and a metric;
`max_nonfinite_steps` of them in a row end the run with DIVERGED, without saving, so the newest checkpoint stays
the last good state. It sees the steps a chunk at a time (chunks.py): the chunk's count of non-finite steps and the
longest run of them in a row, which the device kept."""
from __future__ import annotations

from typing import Callable

from incv4.trainer.training.chunks import Tally
from incv4.trainer.training.console import log_error


class DivergenceGuard:
    def __init__(self, max_in_row: int, metric, warn: Callable[[str], None] = log_error):
        self.max_in_row = max_in_row
        self.metric = metric
        self.warn = warn
        self.in_row = 0  # non-finite steps in a row at the end of the last chunk; the next chunk carries them on

    def diverged(self, tally: Tally, global_step: int) -> bool:
        """Record one chunk, ending at `global_step`; True when the run must stop."""
        self.in_row = tally.nonfinite_in_row
        if tally.nonfinite_steps == 0:
            return False
        self.metric.nonfinite_loss(tally.nonfinite_steps)
        self.warn(_warning(tally, global_step))
        if tally.worst_in_row < self.max_in_row:
            return False
        where = "at" if tally.steps == 1 else "by"
        self.warn(f"error: training diverged: {tally.worst_in_row} non-finite steps in a row "
                  f"(max_nonfinite_steps {self.max_in_row}) {where} step {global_step}; "
                  f"stopping without saving (the last checkpoint is the last good state)")
        return True


def _warning(tally: Tally, global_step: int) -> str:
    if tally.steps == 1:
        return (f"warning: non-finite loss/gradients at step {global_step} ({tally.nonfinite_in_row} in a row); "
                f"update skipped")
    return (f"warning: non-finite loss/gradients at {tally.nonfinite_steps} of steps "
            f"{global_step - tally.steps + 1}-{global_step} ({tally.worst_in_row} in a row at most, "
            f"{tally.nonfinite_in_row} at step {global_step}); updates skipped")
