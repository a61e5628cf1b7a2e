"""The real worker (`python -m incv4.trainer.training.worker`) with every checkpoint write held open for a while
after MindSpore wrote its temporary file, so a test can kill the run mid-write:
`python slow_checkpoint_worker.py --slow-seconds 20 <the worker's flags>`. Everything else is the product."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import mindspore as ms

from incv4.trainer.training import worker


def hold_checkpoint_writes(seconds: float) -> None:
    """Make mindspore.save_checkpoint sleep `seconds` after writing (the checkpoint store calls it by attribute)."""
    save = ms.save_checkpoint

    def slow_save(*args, **kwargs):
        save(*args, **kwargs)
        time.sleep(seconds)

    ms.save_checkpoint = slow_save


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    parser.add_argument("--slow-seconds", type=float, required=True)
    ours, worker_args = parser.parse_known_args(argv)
    hold_checkpoint_writes(ours.slow_seconds)
    return worker.main(worker_args)


if __name__ == "__main__":
    sys.exit(main())
