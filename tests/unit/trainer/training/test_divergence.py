"""The divergence guard on its own: each non-finite step is a warning and a metric; the count resets on a finite
step; max_nonfinite_steps in a row is one error line and the order to stop."""
from __future__ import annotations

from incv4.trainer.training.divergence import DivergenceGuard


class Metric:
    nonfinite = 0

    def nonfinite_loss(self):
        self.nonfinite += 1


def test_non_finite_steps_in_a_row_stop_the_run_at_the_limit():
    lines, metric = [], Metric()
    guard = DivergenceGuard(3, metric, lines.append)
    verdicts = [guard.diverged(finite, step) for step, finite in
                [(1, True), (2, False), (3, True), (4, False), (5, False), (6, False)]]
    assert verdicts == [False, False, False, False, False, True]
    assert metric.nonfinite == 4
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == ["warning: non-finite loss/gradients at step 2 (1 in a row); update skipped",
                        "warning: non-finite loss/gradients at step 4 (1 in a row); update skipped",
                        "warning: non-finite loss/gradients at step 5 (2 in a row); update skipped",
                        "warning: non-finite loss/gradients at step 6 (3 in a row); update skipped"]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == ["error: training diverged: 3 non-finite steps in a row (max_nonfinite_steps 3) at step 6; "
                      "stopping without saving (the last checkpoint is the last good state)"]


def test_finite_steps_say_nothing():
    lines = []
    guard = DivergenceGuard(1, Metric(), lines.append)
    assert not any(guard.diverged(True, step) for step in range(1, 10))
    assert lines == []
