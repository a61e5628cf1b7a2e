"""The divergence guard: a non-finite step (its update was skipped by the train step) is a warning and a metric;
`max_nonfinite_steps` of them in a row end the run with DIVERGED, without saving, so the newest checkpoint stays
the last good state."""
from __future__ import annotations

from typing import Callable

from incv4.trainer.training.console import log_error


class DivergenceGuard:
    def __init__(self, max_in_row: int, metric, warn: Callable[[str], None] = log_error):
        self.max_in_row = max_in_row
        self.metric = metric
        self.warn = warn
        self.in_row = 0

    def diverged(self, finite: bool, global_step: int) -> bool:
        """Record one step; True when the run must stop."""
        if finite:
            self.in_row = 0
            return False
        self.in_row += 1
        self.metric.nonfinite_loss()
        self.warn(f"warning: non-finite loss/gradients at step {global_step} ({self.in_row} in a row); "
                  f"update skipped")
        if self.in_row < self.max_in_row:
            return False
        self.warn(f"error: training diverged: {self.in_row} non-finite steps in a row "
                  f"(max_nonfinite_steps {self.max_in_row}) at step {global_step}; "
                  f"stopping without saving (the last checkpoint is the last good state)")
        return True
