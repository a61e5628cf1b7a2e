"""A worker killed twice, for real: `incv4 train --workers 2 --max-restarts 1` (the real launcher, InceptionV4 on the
demo data, MindSpore's collectives), one story of three epochs (one test: each InceptionV4 start is minutes here):

1. rank 1 is SIGKILLed after the first epoch's checkpoint: the launcher restarts both workers as a fresh MindSpore
   cluster (in-pod restart 1 of 1), they resume from that checkpoint, and the restart shows on /metrics;
2. rank 1 is SIGKILLed again after the second epoch's checkpoint: no restart is left, so the launcher stops the other
   worker and exits non-zero (the pod fails; Volcano's policy decides what follows);
3. relaunching the same command (the pod's next start) resumes from the newest checkpoint and finishes the plan with
   exactly the planned steps and a final checkpoint that loads.

Heavy: run it under `flock /tmp/incv4-heavy.lock`."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from incv4.trainer.checkpoint import store
from incv4.trainer.launcher.plan import free_port
from trainer_processes import worker_pids

pytestmark = pytest.mark.e2e

EPOCHS = 3
STEPS_PER_EPOCH = 5  # 10 classes x 4 images / (2 workers x batch 4)
TIMEOUT = 900
FIRST_KILL_AT = r"epoch 2/3 step 2/5 "  # after the first epoch's checkpoint
SECOND_KILL_AT = r"epoch 3/3 step 2/5 "  # after the second epoch's, in the restarted group
RESTARTS_SAMPLE = re.compile(r'^incv4_worker_restarts_total\{rank="1"\} ([\d.]+)$', re.M)


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return ""


def _kill_rank_1(ckpt, lines) -> None:
    pids = worker_pids(str(ckpt))
    assert set(pids) == {0, 1}, (pids, lines[-10:])
    os.kill(pids[1], signal.SIGKILL)


class Launch:
    """`incv4 <args>` with stdout read line by line and stderr collected by a thread (no full pipe)."""

    def __init__(self, args):
        self.proc = subprocess.Popen([sys.executable, "-c", "from incv4.operator.cli import main; main()"] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines, self.err_lines = [], []
        self.reader = threading.Thread(target=lambda: self.err_lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()
        self.deadline = time.monotonic() + TIMEOUT

    def follow(self, on_line=lambda line: None):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            on_line(line)
            assert time.monotonic() < self.deadline, self.lines[-20:]
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        return self.proc.returncode

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    @property
    def err(self) -> str:
        return "".join(self.err_lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_a_killed_worker_is_restarted_in_the_pod_then_out_of_restarts_the_relaunch_resumes(tmp_path, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    data, ckpt = tmp_path / "data", tmp_path / "ckpt"
    write_demo_dataset(str(data), num_classes=10, train_per_class=4, val_per_class=2, image_size=80)
    port = free_port()
    args = ["train", "--workers", "2", "--max-restarts", "1", "--metrics-port", str(port),
            "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
            "--data-dir", str(data), "--set", f"ckpt_save_dir={ckpt}", "--set", f"epoch_size={EPOCHS}",
            "--set", "log_interval=1", "--set", "warmup_epochs=1", "--set", "decay_epochs=1",
            "--set", "val_while_train=False", "--set", "batch_size=4"]
    first, second, kills, pages = Launch(args), None, [], []

    def on_line(line):
        if not kills and re.search(FIRST_KILL_AT, line):
            _kill_rank_1(ckpt, first.lines)
            kills.append("first")
        elif len(kills) == 1 and "resuming from" in line:
            pages.append(_scrape(port))  # the restarted group is training: /metrics is still served
        elif len(kills) == 1 and re.search(SECOND_KILL_AT, line):
            _kill_rank_1(ckpt, first.lines)
            kills.append("second")

    try:
        first_code = first.follow(on_line)
        after_first = [e.global_step for e in store.read_manifest(str(ckpt))]
        first_log = (ckpt / "logs" / "worker_1.log").read_text(errors="replace")  # the relaunch starts it anew
        second = Launch(args)
        second_code = second.follow()
    finally:
        for launch in (first, second):
            if launch is not None:
                launch.stop()
        for pid in worker_pids(str(ckpt)).values():
            os.kill(pid, signal.SIGKILL)

    # 1. the in-pod restart
    assert kills == ["first", "second"], first.out[-3000:] + first.err[-3000:]
    assert "[launch] restarting the local workers (1 of 1): rank 1 exited -9 (killed by SIGKILL)" in first.err
    assert f"resuming from {ckpt / f'incv4-e0001-s{STEPS_PER_EPOCH:09d}.ckpt'}" in first.out
    assert pages and [float(v) for v in RESTARTS_SAMPLE.findall(pages[0])] == [1.0], pages[:1]
    # 2. out of restarts: the pod fails, with the epoch-2 checkpoint written
    assert first_code not in (0, None), first.err[-3000:]
    assert "[launch] rank 1 failed with exit -9 (killed by SIGKILL); stopping every other process" in (
        first.err.split("restarting the local workers")[-1])
    assert after_first == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    # 3. the relaunch resumes from the newest checkpoint and trains epoch 3 once, from its start
    assert second_code == 0, second.err[-3000:]
    assert f"resuming from {ckpt / f'incv4-e0002-s{2 * STEPS_PER_EPOCH:09d}.ckpt'}" in second.out
    steps = [int(m.group(1)) for m in re.finditer(r"epoch 3/3 step (\d+)/5 ", second.out)]
    assert steps == list(range(2, STEPS_PER_EPOCH + 1))  # after a start the first step's line is the compile line
    assert len(re.findall(r"first step done in [\d.]+ s \(graph compile included\)", second.out)) == 1
    assert not re.search(r"epoch [12]/3 step", second.out)
    assert f"training finished: {EPOCHS * STEPS_PER_EPOCH} steps" in second.out
    final = store.load_newest(str(ckpt))
    assert final.position == store.Position(epoch=EPOCHS, global_step=EPOCHS * STEPS_PER_EPOCH)
    assert "[launch] restart 1 of 1: rank 1 exited -9 (killed by SIGKILL)" in first_log
    assert worker_pids(str(ckpt)) == {}
