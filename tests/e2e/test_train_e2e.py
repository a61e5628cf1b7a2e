"""End to end on one worker: real InceptionV4 training on demo data (75px, batch 16), interrupted twice and resumed.

One module-scoped story keeps InceptionV4 compiles few (each costs 30-60 s):
  run A  the worker process with a NaN injected at step 2 (tests/support/workers/training_nan_worker.py, the real
         worker with a wrapped loss), SIGTERM mid-epoch 1                          -> exit 143, mid-epoch checkpoint
  run B  `incv4 train --workers 1`: resumes mid-epoch; checkpoint writes slowed; SIGKILL while the epoch-2
         checkpoint is being written                                               -> epoch-1 checkpoint intact
  run C  same command: resumes from epoch 1, finishes                              -> exit 0, exactly the plan
  then   `incv4 validate` on the last checkpoint reports the top-1 run C's last eval reported.
A separate short run of the NaN worker diverges on purpose (NaN losses in a row)."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from incv4.trainer import cpu_backend
from incv4.trainer.checkpoint import store

pytestmark = pytest.mark.e2e

EPOCHS = 3
STEPS_PER_EPOCH = 10  # 10 classes x 16 train images / batch 16
PROGRESS = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss ([\d.]+|nan|inf) lr ([\d.]+) img/s ([\d.]+) "
                      r"ETA (\d+:\d\d:\d\d|\?)$")
RUN_TIMEOUT = 900
NAN_WORKER = str(pathlib.Path(__file__).resolve().parents[1] / "support" / "workers" / "training_nan_worker.py")
SLOW_WORKER = str(pathlib.Path(__file__).resolve().parents[1] / "support" / "workers" / "slow_checkpoint_worker.py")


def _incv4():
    return [sys.executable, "-c", "from incv4.operator.cli import main; main()"]


class Run:
    """A training process whose stdout is read line by line, so a test can act at a given point."""

    def __init__(self, args, env=None, command=None):
        """`incv4 <args>`, or `<command> <args>` when a command is given."""
        # Without the oneDNN cap conftest gives this process: the trainer decides (trainer/cpu_backend.py)
        environ = {k: v for k, v in os.environ.items() if k != cpu_backend.ISA_ENV}
        self.proc = subprocess.Popen((command or _incv4()) + args, env=dict(environ, **(env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = []
        self.deadline = time.monotonic() + RUN_TIMEOUT

    def wait_for(self, pattern: str) -> str:
        regex = re.compile(pattern)
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if regex.search(line):
                return line
            if time.monotonic() > self.deadline:
                break
        raise AssertionError(f"never saw {pattern!r}; output:\n" + "\n".join(self.lines[-30:])
                             + "\n" + self.proc.stderr.read())

    def finish(self):
        try:
            out, err = self.proc.communicate(timeout=max(1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.lines += out.splitlines()
        self.stderr = err
        self.code = self.proc.returncode
        return self

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()


def _nan_worker(cli_args, nan_at_steps: str) -> Run:
    """The worker process (what `incv4 train --workers 1` runs in-process) with NaN losses at the given steps."""
    assert cli_args[:5] == ["train", "--workers", "1", "--metrics-port", "0"]  # the worker serves no metrics
    return Run(["--nan-at-steps", nan_at_steps] + cli_args[5:], command=[sys.executable, NAN_WORKER])


def _losses(lines):
    return [(int(m.group(1)), int(m.group(3)), float(m.group(5))) for m in map(PROGRESS.match, lines) if m]


@pytest.fixture(scope="module")
def story(tmp_path_factory, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    work = tmp_path_factory.mktemp("train_e2e")
    data, ckpt = work / "data", work / "ckpt"
    write_demo_dataset(str(data), num_classes=10, train_per_class=16, val_per_class=4, image_size=80)
    args = ["train", "--workers", "1", "--metrics-port", "0",
            "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
            "--data-dir", str(data), "--set", f"ckpt_save_dir={ckpt}", "--set", f"epoch_size={EPOCHS}",
            "--set", "keep_checkpoint_max=2", "--set", "log_interval=1", "--set", "warmup_epochs=1",
            "--set", "batch_size=16",  # batch 4 on one worker is too noisy for the loss to fall in 30 steps
            "--set", "decay_epochs=2", "--set", "lr=0.002",
            "--set", "bn_momentum=0.9997", "--set", "bn_recalibrate_steps=4"]  # MindCV's BN + recalibration
    runs = {}
    try:
        a = runs["a"] = _nan_worker(args, "2")
        a.wait_for(r"^epoch 1/3 step 4/10 ")
        a.proc.send_signal(signal.SIGTERM)
        a.finish()
        runs["after_a"] = sorted(os.listdir(ckpt))

        b = runs["b"] = Run(["--slow-seconds", "20"] + args[5:], command=[sys.executable, SLOW_WORKER])
        b.wait_for(r"^epoch 2/3 step 10/10 ")
        temporary = None
        deadline = time.monotonic() + 300
        while temporary is None and time.monotonic() < deadline and b.proc.poll() is None:
            temporary = next((n for n in os.listdir(ckpt) if n.startswith(".tmp-incv4-e0002")), None)
            time.sleep(0.1)
        runs["b_temporary"] = temporary
        b.kill()
        runs["after_b"] = sorted(os.listdir(ckpt))

        c = runs["c"] = Run(args).finish()
        found = store.candidates(str(ckpt))
        assert found, (f"run C (exit {c.code}) left no checkpoint in {ckpt}; its last lines:\n"
                       + "\n".join(c.lines[-15:]) + "\n" + c.stderr[-3000:])
        newest = found[0]
        runs["newest"] = newest
        validate = subprocess.run(_incv4() + ["validate", "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
                                              "--data-dir", str(data), "--ckpt-path", str(ckpt / newest.name),
                                              "-o", "json"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
        runs["validate"] = validate
        runs["ckpt"], runs["data"], runs["args"] = ckpt, data, args
        yield runs
    finally:
        for run in runs.values():
            if isinstance(run, Run) and run.proc.poll() is None:
                run.kill()
        # ~1 GB of checkpoints and graph caches: a CI machine that runs the suite again and again must not fill up
        shutil.rmtree(work, ignore_errors=True)


def test_every_run_caps_onednn_for_mindspores_cpu_convolutions(story):
    # no cap in the environment (Run removes it): each run sets it before its first kernel and says so once
    for name in "abc":
        lines = story[name].lines
        assert sum(line.startswith(f"CPU kernels: oneDNN capped at {cpu_backend.ISA_CAP}") for line in lines) == 1, \
            lines[:10]


def test_progress_lines_show_epoch_step_loss_lr_speed_and_eta(story):
    progress = [line for line in story["c"].lines if PROGRESS.match(line)]
    # run C trains epochs 2 and 3 with a line per step (log_interval 1), except the first step after start: its
    # time is the graph compile, reported on its own line and kept out of img/s and ETA
    assert len(progress) == 2 * STEPS_PER_EPOCH - 1
    assert PROGRESS.match(progress[0]).group(3) == "2"
    assert any(re.match(r"^first step done in [\d.]+ s \(graph compile included\)$", line)
               for line in story["c"].lines)
    assert PROGRESS.match(progress[-1]).group(8) == "0:00:00"


def test_sigterm_finishes_the_step_saves_and_exits_143(story):
    a = story["a"]
    assert a.code == 143, a.stderr
    stopped = [line for line in a.lines if line.startswith("stopped by SIGTERM at step ")]
    assert len(stopped) == 1
    step = int(stopped[0].split("step ")[1].split("/")[0])
    assert 4 <= step < STEPS_PER_EPOCH
    assert f"incv4-e0000-s{step:09d}.ckpt" in story["after_a"]


def test_an_injected_nan_is_counted_and_skipped_and_training_goes_on(story):
    a = story["a"]
    assert "warning: non-finite loss/gradients at step 2 (1 in a row); update skipped" in a.stderr
    steps = [(s, loss) for e, s, loss in _losses(a.lines)]
    assert [s for s, _ in steps][:3] == [2, 3, 4]  # step 1's line is the compile line


def test_resume_after_sigterm_continues_mid_epoch(story):
    b = story["b"]
    a_step = int([line for line in story["a"].lines if line.startswith("stopped by SIGTERM")][0]
                 .split("step ")[1].split("/")[0])
    resumed = [line for line in b.lines if line.startswith("resuming from ")]
    assert resumed and f"s{a_step:09d}.ckpt" in resumed[0], b.lines[:20]
    first = _losses(b.lines)[0]
    # the next step of the same epoch, not the epoch's start (the first step after start prints the compile line)
    assert first[:2] == (1, a_step + 2)


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(story):
    assert story["b_temporary"], "the epoch-2 checkpoint write was never caught in progress"
    assert story["b"].code == -signal.SIGKILL
    after = story["after_b"]
    assert "incv4-e0001-s000000010.ckpt" in after
    assert not any(n.startswith("incv4-e0002") for n in after)
    resumed = [line for line in story["c"].lines if line.startswith("resuming from ")]
    assert resumed and "incv4-e0001-s000000010.ckpt" in resumed[0]


def test_the_finished_run_has_exactly_the_planned_steps_and_keeps_keep_checkpoint_max(story):
    c = story["c"]
    assert c.code == 0, c.stderr
    assert f"training finished: {EPOCHS * STEPS_PER_EPOCH} steps" in "\n".join(c.lines)
    files = sorted(n for n in os.listdir(story["ckpt"]) if n.endswith(".ckpt"))
    assert files == ["incv4-e0002-s000000020.ckpt", "incv4-e0003-s000000030.ckpt"]
    entries = store.read_manifest(str(story["ckpt"]))
    assert [(e.epoch, e.global_step) for e in entries] == [(2, 20), (3, 30)]
    assert store.load(str(story["ckpt"] / files[-1])).position.global_step == EPOCHS * STEPS_PER_EPOCH
    saved = [line for line in c.lines if line.startswith("checkpoint ")]
    assert len(saved) == 2  # one per epoch run C trained (epochs 2 and 3)


def test_the_loss_falls(story):
    early = [loss for _, _, loss in _losses(story["a"].lines) if loss == loss][:3]
    late = [loss for epoch, _, loss in _losses(story["c"].lines) if epoch == EPOCHS]
    assert sum(late) / len(late) < sum(early) / len(early), (early, late)
    # and it learned something that generalises: the last eval beats chance (1/10)
    final = [line for line in story["c"].lines if line.startswith("training finished: ")]
    assert final and float(re.search(r"top-1 ([\d.]+)%", final[0]).group(1)) > 10.0, final


def test_validate_reports_the_top1_of_the_last_eval(story):
    validate = story["validate"]
    assert validate.returncode == 0, validate.stderr
    result = json.loads(validate.stdout)
    evals = [line for line in story["c"].lines if re.match(r"^epoch 3/3 eval: ", line)]
    assert len(evals) == 1
    top1 = float(re.search(r"top-1 ([\d.]+)%", evals[0]).group(1))
    assert result["samples"] == 40  # 10 classes x 4 val images
    assert f"{result['top1'] * 100:.2f}" == f"{top1:.2f}"
    entries = store.read_manifest(str(story["ckpt"]))
    assert entries[-1].extra["top1"] == pytest.approx(result["top1"])


def test_too_many_nonfinite_losses_in_a_row_stop_the_run(story, tmp_path):
    args = [a if not a.startswith("ckpt_save_dir=") else f"ckpt_save_dir={tmp_path / 'ckpt'}"
            for a in story["args"]] + ["--set", "max_nonfinite_steps=3"]
    run = _nan_worker(args, "2,4,5,6").finish()
    assert run.code == 4, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: non-finite")]
    assert [int(w.split("step ")[1].split(" ")[0]) for w in warnings] == [2, 4, 5, 6]
    assert "(3 in a row)" in warnings[-1]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "diverged" in errors[0] and "max_nonfinite_steps 3" in errors[0]
    assert not any(line.startswith("epoch 1/3 step 7/") for line in run.lines)
