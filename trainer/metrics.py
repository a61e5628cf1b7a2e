"""Prometheus metrics of a training run (prometheus-client, multiprocess mode).

INTERFACE SKELETON — the metrics helper replaces the bodies. The trainer (train.py) and the launcher (launch.py)
call exactly these names; keep them stable.
"""
from __future__ import annotations

from typing import Mapping, Optional


def prepare_multiprocess_dir(path: str) -> str:
    """Launcher, before starting workers: make `path` a fresh, empty multiprocess directory and export
    PROMETHEUS_MULTIPROC_DIR so every child process writes its samples there. Returns the path."""
    return path


def serve(port: int) -> Optional[object]:
    """Launcher: serve /metrics for all local ranks on `port` (0 = off). Returns a handle with `.shutdown()`."""
    return None


class LauncherMetrics:
    """Counters the launcher owns (it outlives its workers)."""

    def worker_exited(self, rank: int, exit_code: int) -> None: ...

    def worker_restarted(self, rank: int) -> None: ...


class TrainerMetrics:
    """One per worker process; `rank` becomes the `rank` label."""

    def __init__(self, rank: int, build_info: Mapping[str, str]):
        self.rank = rank

    def set_planned(self, total_steps: int, steps_per_epoch: int) -> None: ...

    def compile_finished(self, seconds: float) -> None: ...

    def steps_done(self, steps: int, seconds: float, samples: int, data_wait_seconds: float,
                   loss: float, lr: float, global_step: int, epoch: int) -> None:
        """After one step, or after a dataset-sink chunk of `steps` steps taking `seconds` in all (the histogram
        then observes seconds/steps once per step)."""

    def nonfinite_loss(self) -> None: ...

    def evaluated(self, top1: float, top5: float) -> None: ...

    def checkpoint_saved(self, seconds: float) -> None: ...

    def checkpoint_failed(self) -> None: ...
