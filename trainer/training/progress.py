"""What a run reports about its steps: the first step's time (the graph compile) on a line of its own, every
step's metrics, and every `log_interval` steps (and at an epoch's end) a progress line with loss, lr, images per
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
        self._interval_start = self._interval_steps = self._step_start = self._stepped_at = self._now = 0

    def epoch_started(self) -> None:
        self._interval_start = self._step_start = self.clock()
        self._interval_steps, self._interval_wait = 0, 0.0

    def step_starting(self) -> bool:
        """Call just before the train step; True before the run's first step (the one that compiles)."""
        self._stepped_at = self.clock()
        return not self.compiled

    def step_finished(self, position: Position, loss: float) -> None:
        """Call once the step's loss is read and `position` counts the step."""
        now = self._now = self.clock()
        seconds = now - self._stepped_at
        self._interval_wait += self._stepped_at - self._step_start
        if not self.compiled:
            self.compiled = True
            self.metric.compile_finished(seconds)
            self.say(f"first step done in {seconds:.1f} s (graph compile included)")
            self._interval_start, self._interval_steps = now, -1  # keep the compile out of img/s and ETA
            self._interval_wait = 0.0
        self._interval_steps += 1
        self.lr = self.lr_schedule[min(position.global_step - 1, len(self.lr_schedule) - 1)]
        self.metric.steps_done(1, seconds, self.recipe.batch_size, self._stepped_at - self._step_start, loss,
                               self.lr, position.global_step, position.epoch + 1)

    def report(self, position: Position, loss: float) -> None:
        """The progress line, when one is due; then the wait for the next batch starts."""
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
        self._step_start = self.clock()

    def finished(self, global_step: int, accuracy: Optional[object]) -> None:
        summary = f"training finished: {global_step} steps"
        if accuracy is not None:
            summary += f", top-1 {accuracy.top1 * 100:.2f}% top-5 {accuracy.top5 * 100:.2f}%"
        self.say(summary)
