"""Progress reporting on its own, with a fake clock: the compile line and its exclusion from speed and ETA, the
progress line's exact format at log_interval and at an epoch's end, and the metrics of each chunk of steps."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from incv4.trainer.checkpoint.store import Position
from incv4.trainer.training.chunks import Tally
from incv4.trainer.training.progress import ProgressReporter, format_eta

# the format tests/e2e read
PROGRESS = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss ([\d.]+|nan|inf) lr ([\d.]+) img/s ([\d.]+) "
                      r"ETA (\d+:\d\d:\d\d|\?)$")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Metric:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


def _reporter(log_interval=2, epochs=2, steps_per_epoch=4, world_size=2):
    recipe = SimpleNamespace(batch_size=8, epoch_size=epochs, log_interval=log_interval)
    lines, clock, metric = [], Clock(), Metric()
    lrs = [0.1 * (i + 1) for i in range(epochs * steps_per_epoch)]
    return ProgressReporter(recipe, world_size, steps_per_epoch, lrs, metric, lines.append, clock), lines, clock, metric


def _step(reporter, clock, position, loss, wait=0.5, seconds=2.0, steps=1):
    """A chunk of `steps` steps taking `seconds`, after waiting `wait` s for its batches (the feed measures it).
    Returns whether it was the compile chunk."""
    first = not reporter.compiled
    reporter.chunk_starting()
    clock.now += wait + seconds
    position.global_step += steps
    position.step_in_epoch += steps
    reporter.chunk_finished(position, Tally(steps, loss, 0, 0, 0, False, wait))
    reporter.report(position, loss)
    return first


def test_the_first_step_is_the_compile_and_stays_out_of_speed_and_eta():
    reporter, lines, clock, metric = _reporter()
    position = Position()
    reporter.epoch_started()
    assert _step(reporter, clock, position, 2.5, seconds=30.0) is True
    assert lines == ["first step done in 30.0 s (graph compile included)"]
    assert ("compile_finished", (30.0,)) in metric.calls
    assert _step(reporter, clock, position, 2.0) is False
    # step 2 is a log_interval step, and the interval holds one timed step (2.5 s: the data wait and the step)
    assert PROGRESS.match(lines[-1]), lines
    assert lines[-1] == "epoch 1/2 step 2/4 loss 2.0000 lr 0.200000 img/s 6.4 ETA 0:00:15"


def test_lines_come_at_log_interval_and_at_the_epochs_end():
    reporter, lines, clock, _ = _reporter(log_interval=3, steps_per_epoch=4)
    position = Position()
    reporter.epoch_started()
    for _ in range(4):
        _step(reporter, clock, position, 1.0)
    steps = [int(PROGRESS.match(line).group(3)) for line in lines if PROGRESS.match(line)]
    assert steps == [3, 4]
    assert lines[-1].endswith("ETA 0:00:10")  # 4 steps left at 2.5 s each


def test_log_interval_zero_prints_no_progress_lines_but_counts_every_step():
    reporter, lines, clock, metric = _reporter(log_interval=0)
    position = Position()
    reporter.epoch_started()
    for _ in range(3):
        _step(reporter, clock, position, 1.0, wait=0.25)
    assert not any(PROGRESS.match(line) for line in lines)
    steps = [args for name, args in metric.calls if name == "steps_done"]
    assert [args[6] for args in steps] == [1, 2, 3]  # global step
    assert steps[-1] == (1, 2.0, 8, 0.25, 1.0, pytest.approx(0.3), 3, 1)  # steps, s, batch, wait, loss, lr, step, epoch


def test_the_last_step_has_no_time_left_and_the_summary_names_the_accuracy():
    reporter, lines, clock, _ = _reporter(log_interval=1, epochs=1, steps_per_epoch=3)
    position = Position()
    reporter.epoch_started()
    for _ in range(3):
        _step(reporter, clock, position, 1.0)
    assert lines[-1].endswith("ETA 0:00:00")
    reporter.finished(3, SimpleNamespace(top1=0.8125, top5=1.0))
    assert lines[-1] == "training finished: 3 steps, top-1 81.25% top-5 100.00%"
    reporter.finished(3, None)
    assert lines[-1] == "training finished: 3 steps"


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.9, "0:00:59"), (3661, "1:01:01"),
                                           (float("inf"), "?"), (float("nan"), "?"), (-1, "?")])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


class History:
    def __init__(self):
        self.intervals = []

    def interval(self, *args):
        self.intervals.append(args)


def test_each_progress_line_goes_to_the_history_with_its_speed_and_mean_data_wait():
    recipe = SimpleNamespace(batch_size=8, epoch_size=1, log_interval=2)
    clock, history, lines = Clock(), History(), []
    reporter = ProgressReporter(recipe, 2, 4, [0.1, 0.2, 0.3, 0.4], Metric(), lines.append, clock, history=history)
    position = Position()
    reporter.epoch_started()
    for wait in (9.0, 0.5, 0.5, 1.0):  # the first step compiles: its wait stays out too
        _step(reporter, clock, position, 1.5, wait=wait)
    # step, epoch, loss, lr, img/s (16 images per 2.5 s and 3.0 s steps), mean data wait per step of the interval
    assert history.intervals == [(2, 1, 1.5, 0.2, pytest.approx(6.4), 0.5),
                                 (4, 1, 1.5, 0.4, pytest.approx(16 / 2.75), 0.75)]
    assert len(history.intervals) == len([line for line in lines if PROGRESS.match(line)])


def test_a_chunk_of_steps_is_counted_once_with_all_its_steps_and_images():
    reporter, lines, clock, metric = _reporter(log_interval=4, steps_per_epoch=8)
    position = Position()
    reporter.epoch_started()
    _step(reporter, clock, position, 2.5, seconds=30.0)  # the compile step
    _step(reporter, clock, position, 2.0, wait=0.3, seconds=6.0, steps=3)
    steps = [args for name, args in metric.calls if name == "steps_done"]
    assert steps[-1] == (3, pytest.approx(6.0), 24, 0.3, 2.0, pytest.approx(0.4), 4, 1)  # steps, s, images, wait,
    # ... loss, lr, step, epoch; the line: 3 timed steps in 6.3 s (wait included) at 16 images each
    assert lines[-1] == "epoch 1/2 step 4/8 loss 2.0000 lr 0.400000 img/s 7.6 ETA 0:00:25"
