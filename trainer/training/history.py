"""A run's training history: rank 0 appends one JSON line per progress line (kind "train": global step, epoch,
loss, lr, img/s, mean data wait per step) and one per evaluation (kind "eval": top-1, top-5) to
`<ckpt_save_dir>/history.jsonl`, each with the wall time. Each start of the process adds a "start" line with the
run's recipe, world size and global batch, which is what `incv4 report` shows.

A resume continues the file. Lines past the resumed checkpoint's step were trained again after the crash, so they
are dropped first (the file is rewritten atomically); a fresh start (--no-resume) moves the previous run's file
into the same `replaced-<UTC time>/` folder its checkpoints go to. Writing is best effort: an error is one warning
line and training goes on without history. A history.jsonl that is not a regular file is never written."""
from __future__ import annotations

import json
import math
import os
import stat
import time
from typing import Callable, List, Optional

from incv4.trainer.checkpoint import store

HISTORY_FILE = "history.jsonl"
START, TRAIN, EVAL = "start", "train", "eval"


def _number(value: float) -> Optional[float]:
    """JSON has no NaN or infinity: a non-finite loss is stored as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def read_lines(path: str) -> List[dict]:
    """The file's records in order; a torn or foreign line (a crash mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records


class TrainingHistory:
    def __init__(self, directory: Optional[str], steps_per_epoch: int, say: Callable[[str], None],
                 clock: Callable[[], float] = time.time):
        """directory None: a history that writes nothing (ranks other than 0)."""
        self.path = os.path.join(directory, HISTORY_FILE) if directory else None
        self.steps_per_epoch = steps_per_epoch
        self.say = say
        self.clock = clock

    def start(self, global_step: int, resume: bool, info: dict) -> None:
        """Make the file fit this start (drop lines past `global_step`, or set a previous run's file aside), then
        append the start record with `info` (recipe, world size, global batch)."""
        if self.path is None or not self._writable():
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            if os.path.exists(self.path):
                if resume:
                    self._drop_lines_after(global_step)
                else:
                    self._set_aside()
        except (OSError, UnicodeDecodeError) as err:
            self._give_up(err)
            return
        self._append({"kind": START, "step": global_step, **info})

    def interval(self, global_step: int, epoch: int, loss: float, lr: float, images_per_second: float,
                 data_wait_seconds: float) -> None:
        self._append({"kind": TRAIN, "step": global_step, "epoch": epoch, "loss": _number(loss), "lr": float(lr),
                      "img_per_s": _number(images_per_second), "data_wait_s": _number(data_wait_seconds)})

    def evaluation(self, epochs_done: int, top1: float, top5: float, seconds: float) -> None:
        self._append({"kind": EVAL, "step": epochs_done * self.steps_per_epoch, "epoch": epochs_done,
                      "top1": float(top1), "top5": float(top5), "eval_s": round(float(seconds), 3)})

    def _writable(self) -> bool:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return True
        except OSError as err:
            self._give_up(err)
            return False
        if stat.S_ISREG(mode):
            return True
        self.say(f"warning: {self.path} is not a regular file incv4 wrote; training goes on without history")
        self.path = None
        return False

    def _drop_lines_after(self, global_step: int) -> None:
        with open(self.path, encoding="utf-8") as fh:
            lines = fh.readlines()
        kept = [line for line in lines if _kept(line, global_step)]
        if len(kept) != len(lines):
            store.atomic_write_text(self.path, "".join(kept))
            self.say(f"history: dropped {len(lines) - len(kept)} line(s) past the resumed step {global_step}")

    def _set_aside(self) -> None:
        target = os.path.join(os.path.dirname(self.path), time.strftime("replaced-%Y%m%d-%H%M%S", time.gmtime()))
        os.makedirs(target, exist_ok=True)
        os.replace(self.path, os.path.join(target, HISTORY_FILE))

    def _append(self, record: dict) -> None:
        if self.path is None:
            return
        record["time"] = round(self.clock(), 3)
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
        except OSError as err:
            self._give_up(err)

    def _give_up(self, err: BaseException) -> None:
        self.say(f"warning: cannot write {self.path}: {getattr(err, 'strerror', None) or err}; "
                 f"training goes on without history")
        self.path = None


def _kept(line: str, global_step: int) -> bool:
    """A complete record at or before `global_step`; torn lines go too."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= global_step \
        and line.endswith("\n")
