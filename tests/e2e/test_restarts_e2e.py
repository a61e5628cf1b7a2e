"""In-pod restarts for real: `incv4 train --workers 2 --max-restarts 1` (the real launcher, InceptionV4 on the demo
data, MindSpore's collectives); rank 1 is SIGKILLed once after the first epoch's checkpoint. The launcher restarts
both workers as a fresh MindSpore cluster, they resume from that checkpoint, the run finishes its plan with exit 0,
and the restart shows in the launcher's log and on /metrics. Heavy: run it under `flock /tmp/incv4-heavy.lock`."""
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

EPOCHS = 2
STEPS_PER_EPOCH = 5  # 10 classes x 4 images / (2 workers x batch 4)
TIMEOUT = 900
KILL_AT = r"epoch 2/2 step 2/5 "  # after the first epoch's checkpoint
RESTARTS_SAMPLE = re.compile(r'^incv4_worker_restarts_total\{rank="1"\} ([\d.]+)$', re.M)


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return ""


def test_a_killed_worker_is_restarted_in_the_pod_and_the_run_resumes_and_finishes(tmp_path, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    data, ckpt = tmp_path / "data", tmp_path / "ckpt"
    write_demo_dataset(str(data), num_classes=10, train_per_class=4, val_per_class=2, image_size=80)
    port = free_port()
    args = ["train", "--workers", "2", "--max-restarts", "1", "--metrics-port", str(port),
            "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
            "--data-dir", str(data), "--set", f"ckpt_save_dir={ckpt}", "--set", f"epoch_size={EPOCHS}",
            "--set", "log_interval=1", "--set", "warmup_epochs=1", "--set", "decay_epochs=1",
            "--set", "val_while_train=False", "--set", "batch_size=4"]
    proc = subprocess.Popen([sys.executable, "-c", "from incv4.operator.cli import main; main()"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    err_lines: list = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)  # no full stderr pipe
    reader.start()
    lines, pages, killed = [], [], False
    deadline = time.monotonic() + TIMEOUT
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not killed and re.search(KILL_AT, line):
                pids = worker_pids(str(ckpt))
                assert set(pids) == {0, 1}, (pids, lines[-10:])
                os.kill(pids[1], signal.SIGKILL)
                killed = True
            elif killed and "resuming from" in line:
                pages.append(_scrape(port))  # the restarted group is training: /metrics is still served
            assert time.monotonic() < deadline, lines[-20:]
        proc.wait(timeout=60)
        reader.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in worker_pids(str(ckpt)).values():
            os.kill(pid, signal.SIGKILL)
    err, out = "".join(err_lines), "\n".join(lines)
    assert killed, out[-3000:]
    assert proc.returncode == 0, err[-3000:]
    assert "[launch] restarting the local workers (1 of 1): rank 1 exited -9 (killed by SIGKILL)" in err
    assert f"resuming from {ckpt / f'incv4-e0001-s{STEPS_PER_EPOCH:09d}.ckpt'}" in out
    assert f"training finished: {EPOCHS * STEPS_PER_EPOCH} steps" in out
    final = store.load_newest(str(ckpt))
    assert final.position == store.Position(epoch=EPOCHS, global_step=EPOCHS * STEPS_PER_EPOCH)
    assert pages and [float(v) for v in RESTARTS_SAMPLE.findall(pages[0])] == [1.0], pages[:1]
    assert "[launch] restart 1 of 1: rank 1 exited -9 (killed by SIGKILL)" in (
        ckpt / "logs" / "worker_1.log").read_text(errors="replace")
    assert worker_pids(str(ckpt)) == {}
