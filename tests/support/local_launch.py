"""A test worker script run as ranks of one node under the real launcher (`incv4 launch`, MindSpore's real
collectives on the CPU), outside any parent run's MindSpore environment."""
from __future__ import annotations

import os
import subprocess
import sys

HANG_GUARD = 300  # seconds: only so a broken job fails the test instead of hanging the suite


def clean_env() -> dict:
    """This process's environment without a parent run's MindSpore and rank variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MS_", "RANK_"))}


def launch_worker(worker: str, work_dir, worker_args, local_workers: int = 2) -> subprocess.CompletedProcess:
    """Runs `worker` as `local_workers` ranks; returns the launcher's finished process (output captured)."""
    from PIL import Image

    from incv4.trainer.launcher.plan import free_port

    data = os.path.join(str(work_dir), "data")
    os.makedirs(os.path.join(data, "train", "a"), exist_ok=True)  # launch checks the data: one class, one image
    Image.new("RGB", (8, 8)).save(os.path.join(data, "train", "a", "0.jpg"))
    return subprocess.run([sys.executable, "-m", "incv4.trainer.launcher.launch", "--worker-script", str(worker),
                           "--data-dir", data, "--set", "num_classes=1", "--set", "opt=momentum",  # not MindCV's adam
                           "--local-workers", str(local_workers), "--nodes", "1", "--node-rank", "0", "--master-addr",
                           "127.0.0.1", "--master-port", str(free_port()), "--log-dir",
                           os.path.join(str(work_dir), "logs"), "--metrics-port", "0",
                           "--no-compile-cache", "--"] + list(worker_args),
                          env=clean_env(), capture_output=True, text=True, timeout=HANG_GUARD)
