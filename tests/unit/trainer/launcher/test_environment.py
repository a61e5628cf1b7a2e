"""What each process of the job is given: msrun's environment for the workers and the scheduler, the compile
cache, and the per-worker CPU threads each worker applies once."""
from __future__ import annotations

import os
import subprocess
import sys

from incv4.trainer.launcher.environment import THREADS_ENV, scheduler_env, worker_env
from incv4.trainer.launcher.topology import Topology


def test_worker_settings_apply_once_even_when_a_wrapper_applied_them_first():
    """A wrapper (test worker, bench) may call apply_worker_settings() before train.py does; MindSpore refuses a
    second threads_num(), so the second call must be a no-op, not a crash in every worker."""
    code = ("from incv4.trainer.launcher.environment import apply_worker_settings\n"
            "apply_worker_settings(); apply_worker_settings()\n"
            "import mindspore as ms; print(ms.device_context.cpu.op_tuning.threads_num.__name__, 'ok')")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **{THREADS_ENV: "1"}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_worker_and_scheduler_environment_match_msrun():
    topo = Topology(nodes=2, node_rank=1, master_addr="10.0.0.10", master_port=8118, local_workers=4)
    env = worker_env({"MS_NODE_ID": "stale", "PATH": "/bin"}, topo, 3, cluster_timeout=600, threads=1)
    assert {k: env[k] for k in ("MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID",
                                "RANK_ID", "RANK_SIZE", "DEVICE_ID", "LOCAL_RANK", "MS_TOPO_TIMEOUT",
                                THREADS_ENV, "OMP_NUM_THREADS")} == {
        "MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": "10.0.0.10", "MS_SCHED_PORT": "8118", "MS_WORKER_NUM": "8",
        "MS_NODE_ID": "7", "RANK_ID": "7", "RANK_SIZE": "8", "DEVICE_ID": "3", "LOCAL_RANK": "3",
        "MS_TOPO_TIMEOUT": "600", THREADS_ENV: "1", "OMP_NUM_THREADS": "1"}
    sched = scheduler_env({"DEVICE_ID": "5"}, Topology(2, 0, "10.0.0.10", 8118, 4), cluster_timeout=60)
    assert sched["MS_ROLE"] == "MS_SCHED" and sched["RANK_ID"] == "0" and sched["MS_WORKER_NUM"] == "8"
    assert "DEVICE_ID" not in sched
    alone = worker_env({"MS_ROLE": "MS_WORKER"}, Topology(1, 0, "127.0.0.1", 8118, 1), 0, 600, 2)
    assert "MS_ROLE" not in alone and alone["RANK_SIZE"] == "1"

