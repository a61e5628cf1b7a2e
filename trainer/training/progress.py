"""What a run reports about its steps: the first step's time (the graph compile) on a line of its own, every
chunk's metrics (chunks.py), and every `log_interval` steps (and at an epoch's end) a progress line with loss, lr, images per
second and the ETA (also appended to the run's history, history.py). The compile step stays out of the speed
and the ETA."""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

from incv4.trainer.checkpoint.store import Position


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    def __init__(self, recipe, world_size: int, steps_per_epoch: int, lr_schedule: Sequence[float], metric,
                 say: Callable[[str], None], clock: Callable[[], float] = time.monotonic, history=None):
        self.recipe = recipe
        self.samples_per_step = recipe.batch_size * world_size
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * recipe.epoch_size
        self.lr_schedule = lr_schedule
        self.metric = metric
        self.say = say
        self.clock = clock
        self.compiled = False
        self.lr = 0.0
        self.history = history  # a TrainingHistory, or None
        self._interval_wait = 0.0
        self._interval_start = self._interval_steps = self._stepped_at = self._now = 0

    def epoch_started(self) -> None:
        self._interval_start = self.clock()
        self._interval_steps, self._interval_wait = 0, 0.0

    def chunk_starting(self) -> None:
        """Call just before a chunk of steps (chunks.py) starts."""
        self._stepped_at = self.clock()

    def chunk_finished(self, position: Position, tally) -> None:
        """Call once the chunk's tally is read and `position` counts its steps. The first chunk of a (re)start is
        the one step that compiles the graph."""
        now = self._now = self.clock()
        seconds = now - self._stepped_at - tally.data_wait
        self._interval_wait += tally.data_wait
        if not self.compiled:
            self.compiled = True
            self.metric.compile_finished(seconds)
            self.say(f"first step done in {seconds:.1f} s (graph compile included)")
            self._interval_start, self._interval_steps = now, -tally.steps  # keep the compile out of img/s, ETA
            self._interval_wait = 0.0
        self._interval_steps += tally.steps
        self.lr = self.lr_schedule[min(position.global_step - 1, len(self.lr_schedule) - 1)]
        self.metric.steps_done(tally.steps, seconds, self.recipe.batch_size * tally.steps, tally.data_wait,
                               tally.loss, self.lr, position.global_step, position.epoch + 1)

    def report(self, position: Position, loss: float) -> None:
        """The progress line, when one is due."""
        interval, step = self.recipe.log_interval, position.step_in_epoch
        if interval and (step % interval == 0 or step == self.steps_per_epoch) and self._interval_steps > 0:
            per_step = (self._now - self._interval_start) / self._interval_steps
            self.say(f"epoch {position.epoch + 1}/{self.recipe.epoch_size} step {step}/{self.steps_per_epoch} "
                     f"loss {loss:.4f} lr {self.lr:.6f} img/s {self.samples_per_step / per_step:.1f} "
                     f"ETA {format_eta(per_step * (self.total_steps - position.global_step))}")
            if self.history is not None:
                self.history.interval(position.global_step, position.epoch + 1, loss, self.lr,
                                      self.samples_per_step / per_step, self._interval_wait / self._interval_steps)
            self._interval_start, self._interval_steps, self._interval_wait = self._now, 0, 0.0

    def finished(self, global_step: int, accuracy: Optional[object]) -> None:
        summary = f"training finished: {global_step} steps"
        if accuracy is not None:
            summary += f", top-1 {accuracy.top1 * 100:.2f}% top-5 {accuracy.top5 * 100:.2f}%"
        self.say(summary)
