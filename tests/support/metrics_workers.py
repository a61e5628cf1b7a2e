"""Helper (no tests here): light stand-ins for training workers, reporting through the real TrainerMetrics API without
MindSpore, as the trainer calls it. Used by the metrics, dashboard and progress tests.

Each worker reports `steps` steps of 4 images (global steps continuing from `start`; the first includes the
"compile" and stays out of the step histogram), says "ready", then waits for its stdin to close before exiting."""
from __future__ import annotations

import subprocess
import sys
import textwrap

WORKER = textwrap.dedent("""
    import sys
    from incv4.trainer.metrics.exporter import TrainerMetrics
    rank, steps, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    m = TrainerMetrics(rank, {"model": "inception_v4", "world_size": "8", "batch_size": "4",
                              "mindspore_version": "2.10.0", "recipe": "test"})
    m.set_planned(100, 10)
    m.compile_finished(1.5)
    for i in range(steps):
        m.steps_done(1, 0.08 + 0.01 * rank, 4, 0.001, 2.0 - 0.01 * i, 0.01, start + i + 1, 1)
    m.evaluated(0.25, 0.75)
    m.checkpoint_saved(0.3)
    print("ready", flush=True)
    sys.stdin.read()
""")


def start_worker(rank: int, steps: int, start: int = 0) -> subprocess.Popen:
    """A worker process that has reported its steps (returns once it says "ready")."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(steps), str(start)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
