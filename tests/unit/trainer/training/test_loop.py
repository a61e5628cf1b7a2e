"""The training loop's wiring, with a fake run (no network, no MindSpore graph) and a fake feed that tallies each
chunk in Python as the compiled ChunkedStep does on the device (test_chunks.py tests the real one): a full run
trains the plan, evaluates and saves after each epoch; a resumed run continues mid-epoch; a finished one has
nothing to do; NaN steps in a row end it with DIVERGED and no save; SIGTERM saves and ends it with TERMINATED, at
once when alone and one step later (the all-reduced flag) with several ranks, at a chunk's end."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("mindspore")

from incv4.trainer import contract  # noqa: E402
from incv4.trainer.checkpoint.policy import CheckpointPolicy  # noqa: E402
from incv4.trainer.checkpoint.store import Position  # noqa: E402
from incv4.trainer.training import loop  # noqa: E402
from incv4.trainer.training.chunks import Tally  # noqa: E402
from incv4.trainer.training.evaluate import Accuracy  # noqa: E402
from incv4.trainer.training.stop import StopRequest  # noqa: E402

EPOCHS, STEPS = 2, 3


class Value:
    def __init__(self, value):
        self.value = value

    def asnumpy(self):
        return np.asarray(self.value)


class Metric:
    def __getattr__(self, name):
        return lambda *args: None


class Writer:
    """The asynchronous CheckpointWriter's interface: save() starts a save, wait() ends the one in flight."""

    def __init__(self):
        self.saved = []
        self.in_flight = 0

    def save(self, save_obj, position, extra=None):
        self.saved.append((position.epoch, position.global_step, position.step_in_epoch, extra))
        self.in_flight = 1
        return f"/ckpt/{position.global_step}"

    def wait(self):
        self.in_flight = 0


class FakeStep:
    """Counts calls; NaN losses at `nan_steps`; SIGTERM arrives during the step numbered `sigterm_at`."""

    def __init__(self, run, stop, nan_steps=(), sigterm_at=None):
        self.run, self.stop, self.nan_steps, self.sigterm_at = run, stop, set(nan_steps), sigterm_at
        self.calls = []

    def __call__(self, images, labels, update, stop_flag, offset=0):
        step = self.run.position.global_step + offset + 1
        self.calls.append((images, bool(update.asnumpy())))
        flag = float(stop_flag.asnumpy())  # what the all-reduce returns: the flags as they were at the call
        if step == self.sigterm_at:
            self.stop.requested = True
        loss = math.nan if step in self.nan_steps else 1.0 / step
        return Value(np.float32(loss)), Value(not math.isnan(loss)), Value(np.float32(flag))


class FakeFeed:
    """The feeds' interface over FakeStep: the loop asks for chunks and reads one tally per chunk."""

    def __init__(self, step, stop, sharing):
        self.step, self.stop, self.sharing = step, stop, sharing
        self.chunks = []

    def begin_epoch(self, epoch_batches, epoch, skip):
        self.batches = iter(epoch_batches(epoch, skip=skip))

    def run(self, steps, in_row):
        self.chunks.append(steps)
        loss, nonfinite, worst, stop_any, done = 0.0, 0, in_row, 0.0, 0
        for images, labels in self.batches:
            if not self.step.calls:
                self.sharing.before_first_call(self.step, images, labels)
            flag = Value(np.float32(1.0 if self.stop.requested else 0.0))
            loss_v, finite, stop_v = self.step(images, labels, Value(True), flag, offset=done)
            loss, stop_any, done = float(loss_v.asnumpy()), float(stop_v.asnumpy()), done + 1
            in_row = 0 if bool(finite.asnumpy()) else in_row + 1
            nonfinite, worst = nonfinite + (in_row > 0), max(worst, in_row)
            if done == steps:
                break
        return Tally(done, loss, nonfinite, in_row, worst, stop_any > 0)


def _run(monkeypatch, rank_size=1, position=None, val_while_train=True, history=None, log_interval=1,
         **step_kwargs):
    recipe = SimpleNamespace(name="fake", epoch_size=EPOCHS, max_nonfinite_steps=2, mode=0, batch_size=4,
                             log_interval=log_interval, val_while_train=val_while_train, val_interval=1,
                             bn_recalibrate_steps=0, ckpt_save_interval=1)
    lines, batches_asked, sharing_calls = [], [], []

    def epoch_batches(epoch, skip=0):
        batches_asked.append((epoch, skip))
        return [(f"e{epoch}b{i}", "labels") for i in range(skip, STEPS)]

    run = SimpleNamespace(recipe=recipe, rank=0, rank_size=rank_size, device="CPU", amp_level="O0",
                          network=None, lr_schedule=[0.1] * (EPOCHS * STEPS), steps_per_epoch=STEPS,
                          total_steps=EPOCHS * STEPS, position=position or Position(), say=lines.append,
                          metric=Metric(), epoch_batches=epoch_batches,
                          evaluate=lambda before_first_call: Accuracy(0.75, 1.0, 8),
                          sharing=SimpleNamespace(before_first_call=lambda *args: sharing_calls.append(args)))
    stop = StopRequest()
    run.train_step = FakeStep(run, stop, **step_kwargs)
    writer = Writer()
    feed = FakeFeed(run.train_step, stop, run.sharing)
    monkeypatch.setattr(loop, "feed_for", lambda run_, stop_: feed)
    monkeypatch.setattr(loop, "_checkpoint_policy",
                        lambda run: CheckpointPolicy(writer, 1, EPOCHS, run.say))
    code = loop.run_epochs(run, stop, history)
    return SimpleNamespace(code=code, run=run, lines=lines, writer=writer, batches=batches_asked,
                           sharing=sharing_calls, chunks=feed.chunks)


def test_a_full_run_trains_the_plan_evaluates_and_saves_each_epoch(monkeypatch):
    result = _run(monkeypatch)
    assert result.code == contract.OK
    assert result.run.position == Position(epoch=EPOCHS, global_step=EPOCHS * STEPS, step_in_epoch=0)
    assert result.batches == [(0, 0), (1, 0)]
    assert [c[0] for c in result.run.train_step.calls] == ["e0b0", "e0b1", "e0b2", "e1b0", "e1b1", "e1b2"]
    assert all(update for _, update in result.run.train_step.calls)
    accuracy = {"top1": 0.75, "top5": 1.0, "samples": 8}
    assert result.writer.saved == [(1, 3, 0, accuracy), (2, 6, 0, accuracy)]
    assert result.writer.in_flight == 0  # the last save is complete before the run returns
    assert len(result.sharing) == 1 and result.sharing[0][1] == "e0b0"  # compile sharing before the first step
    assert result.lines[0] == "training fake: 2 epochs x 3 steps, 1 worker(s), device CPU, mode graph, amp O0"
    assert result.lines[-1] == "training finished: 6 steps, top-1 75.00% top-5 100.00%"
    assert [line for line in result.lines if line.startswith("checkpoint ")] == ["checkpoint /ckpt/3",
                                                                                  "checkpoint /ckpt/6"]


def test_a_resumed_run_continues_mid_epoch(monkeypatch):
    result = _run(monkeypatch, position=Position(epoch=0, global_step=2, step_in_epoch=2), val_while_train=False)
    assert result.code == contract.OK
    assert result.batches == [(0, 2), (1, 0)]
    assert [c[0] for c in result.run.train_step.calls] == ["e0b2", "e1b0", "e1b1", "e1b2"]
    assert result.writer.saved == [(1, 3, 0, {}), (2, 6, 0, {})]
    assert result.lines[-1] == "training finished: 6 steps"


def test_a_finished_run_has_nothing_to_do(monkeypatch):
    result = _run(monkeypatch, position=Position(epoch=EPOCHS, global_step=EPOCHS * STEPS))
    assert result.code == contract.OK
    assert result.lines == ["nothing to do: the newest checkpoint is at step 6 of 6"]
    assert result.run.train_step.calls == [] and result.writer.saved == []


def test_nan_steps_in_a_row_end_the_run_with_diverged_and_no_save(monkeypatch, capsys):
    result = _run(monkeypatch, nan_steps=(2, 4, 5))
    assert result.code == contract.DIVERGED
    assert result.run.position.global_step == 5
    assert result.writer.saved == [(1, 3, 0, {"top1": 0.75, "top5": 1.0, "samples": 8})]  # epoch 1 only
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "max_nonfinite_steps 2" in errors[0] and "at step 5" in errors[0]


def test_sigterm_alone_saves_after_the_current_step_and_exits_143(monkeypatch):
    result = _run(monkeypatch, sigterm_at=2)
    assert result.code == contract.TERMINATED
    assert result.writer.saved == [(0, 2, 2, None)]
    assert result.writer.in_flight == 0  # the stop's save is complete before the worker exits 143
    assert result.lines[-1] == "stopped by SIGTERM at step 2/6"


def test_sigterm_with_several_ranks_stops_on_the_next_steps_all_reduced_flag(monkeypatch):
    result = _run(monkeypatch, rank_size=2, sigterm_at=2)
    assert result.code == contract.TERMINATED
    assert result.writer.saved == [(0, 3, 3, None)]
    assert result.lines[-1] == "stopped by SIGTERM at step 3/6"


def test_the_history_gets_every_progress_line_and_evaluation_of_the_run(monkeypatch, tmp_path):
    from incv4.trainer.training.history import HISTORY_FILE, TrainingHistory, read_lines

    history = TrainingHistory(str(tmp_path), STEPS, say=print)
    result = _run(monkeypatch, history=history)
    assert result.code == contract.OK
    records = read_lines(str(tmp_path / HISTORY_FILE))
    assert [(r["kind"], r["step"]) for r in records] == [
        ("train", 2), ("train", 3), ("eval", 3), ("train", 4), ("train", 5), ("train", 6), ("eval", 6)]
    assert [r["loss"] for r in records if r["kind"] == "train"] == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6])


def test_chunks_end_at_progress_lines_and_the_epochs_end_and_the_first_is_the_compile_step(monkeypatch):
    result = _run(monkeypatch, log_interval=2, val_while_train=False)
    assert result.code == contract.OK
    assert result.chunks == [1, 1, 1, 2, 1]  # epoch 1: compile step, to step 2, to the end; epoch 2: 2, then 1
    progress = [line.split(" loss")[0] for line in result.lines if " loss " in line]
    assert progress == ["epoch 1/2 step 2/3", "epoch 1/2 step 3/3", "epoch 2/2 step 2/3", "epoch 2/2 step 3/3"]


def test_sigterm_in_a_chunk_stops_every_rank_at_the_end_of_the_chunk_that_carries_it(monkeypatch):
    # steps 4-5 are one chunk: SIGTERM during step 4 is carried by step 5, the chunk's last: stop after 5
    result = _run(monkeypatch, rank_size=2, sigterm_at=4, log_interval=2)
    assert result.code == contract.TERMINATED
    assert result.writer.saved == [(1, 3, 0, {"top1": 0.75, "top5": 1.0, "samples": 8}), (1, 5, 2, None)]
    assert result.lines[-1] == "stopped by SIGTERM at step 5/6"
    # during step 5, the chunk's last, it is carried by step 6, the next chunk
    result = _run(monkeypatch, rank_size=2, sigterm_at=5, log_interval=2)
    assert result.writer.saved[-1] == (1, 6, 3, None) and result.lines[-1] == "stopped by SIGTERM at step 6/6"


def test_nan_steps_in_a_row_within_a_chunk_end_the_run_at_the_chunks_end(monkeypatch, capsys):
    result = _run(monkeypatch, nan_steps=(4, 5), log_interval=2)
    assert result.code == contract.DIVERGED
    assert result.run.position.global_step == 5
    err = capsys.readouterr().err.splitlines()
    assert "warning: non-finite loss/gradients at 2 of steps 4-5 (2 in a row at most, 2 at step 5); " \
           "updates skipped" in err
    assert [line for line in err if line.startswith("error: ")] == [
        "error: training diverged: 2 non-finite steps in a row (max_nonfinite_steps 2) by step 5; stopping "
        "without saving (the last checkpoint is the last good state)"]


@pytest.mark.parametrize("log_interval", [0, None])
def test_without_progress_lines_chunks_run_to_the_epochs_end(monkeypatch, log_interval):
    result = _run(monkeypatch, log_interval=log_interval, val_while_train=False)
    assert result.code == contract.OK
    assert result.chunks == [1, 2, 3]  # the compile step, then each epoch's rest in one chunk
    assert not [line for line in result.lines if " loss " in line]
    assert result.lines[-1] == "training finished: 6 steps"
