"""Evaluation while training (`val_while_train`): after every `val_interval`-th epoch and after the last one,
BatchNorm recalibration first when the recipe asks for it, then top-1/top-5 over the val split, reported as a
metric, a log line and a history line (history.py), and returned for the checkpoint's manifest entry."""
from __future__ import annotations

import time
from typing import Callable, Optional

from incv4.trainer.training.evaluate import Accuracy


class PeriodicEvaluation:
    def __init__(self, recipe, evaluate: Callable[[Optional[Callable]], Accuracy],
                 recalibrate: Optional[Callable[[int], None]], before_first_call: Callable, metric,
                 say: Callable[[str], None], clock: Callable[[], float] = time.monotonic, history=None):
        """evaluate(before_first_call or None) -> Accuracy; recalibrate(epochs_done) or None when off;
        before_first_call: compile sharing's hook, handed to the first evaluation only (one eval graph)."""
        self.recipe = recipe
        self.evaluate = evaluate
        self.recalibrate = recalibrate
        self.before_first_call = before_first_call
        self.metric = metric
        self.say = say
        self.clock = clock
        self.history = history  # a TrainingHistory, or None
        self.last: Optional[Accuracy] = None

    def due(self, epochs_done: int) -> bool:
        return bool(self.recipe.val_while_train) and (epochs_done % self.recipe.val_interval == 0
                                                      or epochs_done == self.recipe.epoch_size)

    def after_epoch(self, epochs_done: int) -> dict:
        """Evaluate when due. Returns the accuracy as a dict ({} when not due)."""
        if not self.due(epochs_done):
            return {}
        if self.recalibrate is not None:
            self.recalibrate(epochs_done)
        started = self.clock()
        accuracy = self.evaluate(self.before_first_call if self.last is None else None)
        self.last = accuracy
        self.metric.evaluated(accuracy.top1, accuracy.top5)
        seconds = self.clock() - started
        self.say(f"epoch {epochs_done}/{self.recipe.epoch_size} eval: top-1 {accuracy.top1 * 100:.2f}% "
                 f"top-5 {accuracy.top5 * 100:.2f}% over {accuracy.samples} images ({seconds:.1f} s)")
        if self.history is not None:
            self.history.evaluation(epochs_done, accuracy.top1, accuracy.top5, seconds)
        return accuracy.as_dict()
