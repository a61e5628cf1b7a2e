"""The training history (history.jsonl): its records, a resume that drops the lines past the resumed step (torn
lines too) and keeps the rest, a fresh start that sets the previous file aside, and the files it never writes."""
from __future__ import annotations

import json
import os

from incv4.trainer.training.history import HISTORY_FILE, TrainingHistory, read_lines

INFO = {"recipe": {"batch_size": 4}, "world_size": 2, "global_batch": 8}


def _history(directory, lines=None):
    return TrainingHistory(str(directory), steps_per_epoch=3, say=(lines if lines is not None else []).append,
                           clock=lambda: 1000.0)


def _train_until(history, last_step, first_step=1):
    for step in range(first_step, last_step + 1):
        history.interval(step, (step - 1) // 3 + 1, 1.0 / step, 0.01, 50.0, 0.02)
        if step % 3 == 0:
            history.evaluation(step // 3, 0.5, 0.9, 1.5)


def test_records_hold_step_epoch_loss_lr_speed_wait_accuracy_and_time(tmp_path):
    history = _history(tmp_path)
    history.start(0, True, INFO)
    _train_until(history, 3)
    records = read_lines(str(tmp_path / HISTORY_FILE))
    assert [r["kind"] for r in records] == ["start", "train", "train", "train", "eval"]
    assert records[0] == {"kind": "start", "step": 0, **INFO, "time": 1000.0}
    assert records[3] == {"kind": "train", "step": 3, "epoch": 1, "loss": 1 / 3, "lr": 0.01, "img_per_s": 50.0,
                          "data_wait_s": 0.02, "time": 1000.0}
    assert records[4] == {"kind": "eval", "step": 3, "epoch": 1, "top1": 0.5, "top5": 0.9, "eval_s": 1.5,
                          "time": 1000.0}


def test_a_non_finite_loss_is_stored_as_null_so_every_line_stays_json(tmp_path):
    history = _history(tmp_path)
    history.interval(1, 1, float("nan"), 0.01, 10.0, 0.0)
    line = (tmp_path / HISTORY_FILE).read_text()
    assert json.loads(line)["loss"] is None and "NaN" not in line


def test_a_resume_drops_the_lines_past_its_step_and_appends_after_the_rest(tmp_path):
    lines = []
    first = _history(tmp_path, lines)
    first.start(0, True, INFO)
    _train_until(first, 5)  # the crash came at step 5; the newest checkpoint is at step 3
    with open(tmp_path / HISTORY_FILE, "a") as fh:
        fh.write('{"kind": "train", "step": 6, "lo')  # torn by the crash
    second = _history(tmp_path, lines)
    second.start(3, True, INFO)
    _train_until(second, 6, first_step=4)
    records = read_lines(str(tmp_path / HISTORY_FILE))
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert [r["step"] for r in records if r["kind"] == "start"] == [0, 3]
    assert "history: dropped 3 line(s) past the resumed step 3" in lines
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_a_resume_with_nothing_past_its_step_leaves_the_file_as_it_was(tmp_path):
    history = _history(tmp_path)
    history.start(0, True, INFO)
    _train_until(history, 3)
    before = (tmp_path / HISTORY_FILE).read_text()
    lines = []
    _history(tmp_path, lines).start(3, True, INFO)
    assert (tmp_path / HISTORY_FILE).read_text().startswith(before)
    assert not [line for line in lines if "dropped" in line]


def test_a_fresh_start_sets_the_previous_history_aside(tmp_path):
    old = _history(tmp_path)
    old.start(0, True, INFO)
    _train_until(old, 3)
    previous = (tmp_path / HISTORY_FILE).read_text()
    _history(tmp_path).start(0, False, INFO)
    aside = [n for n in os.listdir(tmp_path) if n.startswith("replaced-")]
    assert len(aside) == 1 and (tmp_path / aside[0] / HISTORY_FILE).read_text() == previous
    assert [r["kind"] for r in read_lines(str(tmp_path / HISTORY_FILE))] == ["start"]


def test_a_history_file_that_is_a_symlink_is_never_written(tmp_path):
    target = tmp_path / "user-notes.txt"
    target.write_text("mine\n")
    (tmp_path / "ckpt").mkdir()
    os.symlink(target, tmp_path / "ckpt" / HISTORY_FILE)
    lines = []
    history = _history(tmp_path / "ckpt", lines)
    history.start(0, True, INFO)
    _train_until(history, 3)
    assert target.read_text() == "mine\n"
    assert any(line.startswith("warning:") and "not a regular file" in line for line in lines)


def test_a_write_error_is_one_warning_and_training_goes_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    lines = []
    history = _history(blocker / "ckpt", lines)  # its folder cannot be made: a file is in the way
    history.start(0, True, INFO)
    _train_until(history, 6)
    assert len([line for line in lines if line.startswith("warning: cannot write")]) == 1


def test_ranks_other_than_0_write_nothing(tmp_path):
    history = TrainingHistory(None, 3, say=print)
    history.start(0, True, INFO)
    _train_until(history, 3)
    assert os.listdir(tmp_path) == []
