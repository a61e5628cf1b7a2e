"""Evaluation while training on its own: when it is due, recalibration before it, compile sharing's hook for the
first evaluation only, the metric, the log line and the manifest entry it returns."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from incv4.trainer.training.evaluate import Accuracy
from incv4.trainer.training.periodic_eval import PeriodicEvaluation


def _evaluation(val_while_train=True, val_interval=2, epochs=5, recalibrate=True):
    events, lines = [], []
    recipe = SimpleNamespace(val_while_train=val_while_train, val_interval=val_interval, epoch_size=epochs)

    def evaluate(before_first_call):
        events.append(("evaluate", before_first_call))
        return Accuracy(top1=0.5, top5=0.875, samples=40)

    metric = SimpleNamespace(evaluated=lambda top1, top5: events.append(("metric", top1, top5)))
    evaluation = PeriodicEvaluation(recipe, evaluate,
                                    (lambda epochs_done: events.append(("recalibrate", epochs_done)))
                                    if recalibrate else None,
                                    "sharing-hook", metric, lines.append, clock=lambda: 7.0)
    return evaluation, events, lines


@pytest.mark.parametrize("interval, epochs, due", [(2, 5, [2, 4, 5]), (1, 3, [1, 2, 3]), (10, 3, [3])])
def test_due_every_val_interval_and_after_the_last_epoch(interval, epochs, due):
    evaluation, _, _ = _evaluation(val_interval=interval, epochs=epochs)
    assert [e for e in range(1, epochs + 1) if evaluation.due(e)] == due


def test_without_val_while_train_nothing_is_evaluated():
    evaluation, events, lines = _evaluation(val_while_train=False)
    assert [evaluation.after_epoch(e) for e in range(1, 6)] == [{}] * 5
    assert events == [] and lines == [] and evaluation.last is None


def test_an_evaluation_recalibrates_first_then_reports_and_returns_the_accuracy():
    evaluation, events, lines = _evaluation()
    assert evaluation.after_epoch(1) == {}
    assert evaluation.after_epoch(2) == {"top1": 0.5, "top5": 0.875, "samples": 40}
    assert events == [("recalibrate", 2), ("evaluate", "sharing-hook"), ("metric", 0.5, 0.875)]
    assert lines == ["epoch 2/5 eval: top-1 50.00% top-5 87.50% over 40 images (0.0 s)"]
    assert evaluation.last == Accuracy(0.5, 0.875, 40)
    evaluation.after_epoch(4)
    assert events[-2] == ("evaluate", None)  # the eval graph is compiled: no second compile-sharing call


def test_without_recalibration_the_evaluation_runs_alone():
    evaluation, events, _ = _evaluation(recalibrate=False)
    evaluation.after_epoch(5)
    assert [e[0] for e in events] == ["evaluate", "metric"]


def test_each_evaluation_goes_to_the_history():
    evaluation, _, _ = _evaluation()
    calls = []
    evaluation.history = SimpleNamespace(evaluation=lambda *args: calls.append(args))
    evaluation.after_epoch(1)
    evaluation.after_epoch(2)
    assert calls == [(2, 0.5, 0.875, 0.0)]  # epochs done, top-1, top-5, seconds
