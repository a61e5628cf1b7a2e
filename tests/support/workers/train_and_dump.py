"""The real worker (`python -m incv4.trainer.training.worker`), unchanged, plus one thing for tests and
measurements: after training, every rank writes its final parameters to $INCV4_DUMP_DIR/params_rank<r>.npz (the
trainer itself checkpoints from rank 0 only), so a test can check that all ranks hold identical weights.

INCV4_KEEP_MINDSPORE_THREADS=1 skips the launcher's per-worker thread settings (to measure what they give).
"""
from __future__ import annotations

import os
import sys

from incv4.trainer.launcher.environment import apply_worker_settings
from incv4.trainer.training import step, worker

_train_steps = []
_build_train_step = step.build_train_step


def _capturing_build_train_step(*args, **kwargs):
    cell = _build_train_step(*args, **kwargs)
    _train_steps.append(cell)
    return cell


def main() -> int:
    step.build_train_step = _capturing_build_train_step
    if os.environ.get("INCV4_KEEP_MINDSPORE_THREADS") != "1":
        apply_worker_settings()
    code = worker.main(sys.argv[1:])
    dump_dir = os.environ.get("INCV4_DUMP_DIR")
    if code == 0 and dump_dir and _train_steps:
        import numpy as np

        rank = int(os.environ.get("RANK_ID", "0"))
        params = {p.name: p.asnumpy() for p in _train_steps[-1].trainable_params()}
        os.makedirs(dump_dir, exist_ok=True)
        np.savez(os.path.join(dump_dir, f"params_rank{rank}.npz"), **params)
    return code


if __name__ == "__main__":
    sys.exit(main())
