"""SIGKILL one worker mid-epoch during a 2-worker CPU run (`incv4 train --workers 2`, the real launcher and
MindSpore's collectives); relaunching the same command resumes from the last checkpoint and the finished run has
exactly the planned steps and a final checkpoint that loads. Heavy: run it under `flock /tmp/incv4-heavy.lock`."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from incv4.trainer.checkpoint import store
from trainer_processes import worker_pids

pytestmark = pytest.mark.e2e

EPOCHS = 2
STEPS_PER_EPOCH = 5  # 10 classes x 4 images / (2 workers x batch 4)
TIMEOUT = 900


def _run(args, lines, until=None):
    proc = subprocess.Popen([sys.executable, "-c", "from incv4.operator.cli import main; main()"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    deadline = time.monotonic() + TIMEOUT
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if until and re.search(until, line):
                return proc
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
        return proc
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def test_sigkill_of_a_worker_then_relaunch_resumes_and_finishes_the_plan(tmp_path, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    data, ckpt = tmp_path / "data", tmp_path / "ckpt"
    write_demo_dataset(str(data), num_classes=10, train_per_class=4, val_per_class=2, image_size=80)
    args = ["train", "--workers", "2", "--metrics-port", "0",
            "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
            "--data-dir", str(data), "--set", f"ckpt_save_dir={ckpt}", "--set", f"epoch_size={EPOCHS}",
            "--set", "log_interval=1", "--set", "warmup_epochs=1", "--set", "decay_epochs=1",
            "--set", "val_while_train=False", "--set", "batch_size=4"]
    first_lines, second_lines = [], []
    first = _run(args, first_lines, until=r"epoch 2/2 step 2/5 ")
    try:
        pids = worker_pids(str(ckpt))
        assert set(pids) == {0, 1}, (pids, first_lines[-10:])
        os.kill(pids[1], signal.SIGKILL)
        first.wait(timeout=60)
        stderr = first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for pid in worker_pids(str(ckpt)).values():
            os.kill(pid, signal.SIGKILL)
    assert first.returncode not in (0, None), stderr[-2000:]
    assert "rank 1" in stderr
    assert [e.global_step for e in store.read_manifest(str(ckpt))] == [STEPS_PER_EPOCH]

    second = _run(args, second_lines)
    assert second.returncode == 0, second.stderr.read()[-3000:]
    out = "\n".join(second_lines)
    assert f"resuming from {ckpt / f'incv4-e0001-s{STEPS_PER_EPOCH:09d}.ckpt'}" in out
    steps = [int(m.group(1)) for m in re.finditer(r"epoch 2/2 step (\d+)/5 ", out)]
    # Epoch 2 trained once, from its start; after a start the first step's line is the compile line.
    assert steps == list(range(2, STEPS_PER_EPOCH + 1))
    assert len(re.findall(r"first step done in [\d.]+ s \(graph compile included\)", out)) == 1
    assert not re.search(r"epoch 1/2 step", out)
    assert f"training finished: {EPOCHS * STEPS_PER_EPOCH} steps" in out
    final = store.load_newest(str(ckpt))
    assert final.position == store.Position(epoch=EPOCHS, global_step=EPOCHS * STEPS_PER_EPOCH)
    assert "classifier.weight" in final.params and "moments.classifier.weight" in final.params
    assert worker_pids(str(ckpt)) == {}
