"""The divergence guard on its own, a chunk of steps at a time (chunks.py): each non-finite step counts in the
metric and a chunk with any is a warning; the count in a row carries over chunks and resets on a finite step;
max_nonfinite_steps in a row is one error line and the order to stop."""
from __future__ import annotations

from incv4.trainer.training.chunks import Tally
from incv4.trainer.training.divergence import DivergenceGuard


class Metric:
    nonfinite = 0

    def nonfinite_loss(self, steps=1):
        self.nonfinite += steps


def _one_step(guard, finite, step):
    in_row = 0 if finite else guard.in_row + 1
    return guard.diverged(Tally(1, 1.0, int(not finite), in_row, max(guard.in_row, in_row), False), step)


def test_non_finite_steps_in_a_row_stop_the_run_at_the_limit():
    lines, metric = [], Metric()
    guard = DivergenceGuard(3, metric, lines.append)
    verdicts = [_one_step(guard, finite, step) for step, finite in
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


def test_a_chunk_is_one_warning_and_its_run_in_a_row_carries_into_the_next():
    lines, metric = [], Metric()
    guard = DivergenceGuard(4, metric, lines.append)
    # steps 11-20: two non-finite steps, the last two of the chunk
    assert not guard.diverged(Tally(10, 1.0, 2, 2, 2, False), 20)
    assert guard.in_row == 2 and metric.nonfinite == 2
    assert lines == ["warning: non-finite loss/gradients at 2 of steps 11-20 (2 in a row at most, 2 at step 20); "
                     "updates skipped"]
    # steps 21-30 start with two more in a row: 4 in a row within the chunk, though it ends finite
    assert guard.diverged(Tally(10, 1.0, 2, 0, 4, False), 30)
    assert lines[-1].startswith("error: training diverged: 4 non-finite steps in a row (max_nonfinite_steps 4) "
                                "by step 30;")
    assert guard.in_row == 0 and metric.nonfinite == 4


def test_finite_steps_say_nothing():
    lines = []
    guard = DivergenceGuard(1, Metric(), lines.append)
    assert not any(_one_step(guard, True, step) for step in range(1, 10))
    assert not guard.diverged(Tally(50, 1.0, 0, 0, 0, False), 60)
    assert lines == []
