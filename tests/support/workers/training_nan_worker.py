"""The real worker (`python -m incv4.trainer.training.worker`) with NaN losses at chosen global steps, for the
tests of the divergence guard: `python training_nan_worker.py --nan-at-steps 2,4 <the worker's flags>`.

The recipe's loss is wrapped (training_nan.LossWithGain) and, before each training step (a call of the chunked
step, chunked_step.py), its gain is set to NaN when the global step about to run is one of the chosen ones (steps
count from 1, across a resume).
Everything else is the product."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/support

from training_nan import LossWithGain  # noqa: E402

from incv4.trainer.model import optim  # noqa: E402
from incv4.trainer.training import chunked_step, loop, worker  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    parser.add_argument("--nan-at-steps", required=True, help="comma-separated global steps (1-based)")
    ours, worker_args = parser.parse_known_args(argv)
    nan_steps = {int(s) for s in ours.nan_at_steps.split(",") if s.strip()}
    runs = []
    build_run, create_loss = loop.build_run, optim.create_loss

    def capturing_build_run(*args, **kwargs):
        runs.append(build_run(*args, **kwargs))
        return runs[-1]

    class NanAtSteps(chunked_step.ChunkedStep):
        chunk_start, in_chunk = None, 0

        def __call__(self, images, labels):
            start = runs[-1].position.global_step  # the loop counts a chunk's steps at its end
            if start != self.chunk_start:
                self.chunk_start, self.in_chunk = start, 0
            self.in_chunk += 1
            self.train_step.with_loss.loss.set_nan(start + self.in_chunk in nan_steps)
            return super().__call__(images, labels)

    loop.build_run = capturing_build_run
    optim.create_loss = lambda recipe: LossWithGain(create_loss(recipe))
    chunked_step.ChunkedStep = NanAtSteps
    return worker.main(worker_args)


if __name__ == "__main__":
    sys.exit(main())
