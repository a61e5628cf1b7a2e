"""When a run saves and which checkpoints it keeps.

Saves: after every `ckpt_save_interval`-th epoch and after the last one, and when SIGTERM stops it mid-epoch. Only
rank 0 writes (every rank holds the same weights); the other ranks have no writer.

Keeps (`ckpt_save_policy`, with `keep_checkpoint_max` as k), as MindCV's CheckpointManager
(mindcv/utils/checkpoint_manager.py, 0.3.0): `latest_k` the newest k; `top_k` the k with the best top-1 (an
epoch without evaluation ranks 0, a tie keeps the older one); null every checkpoint. Unlike MindCV, `top_k` also
keeps the newest checkpoint until a newer one is written, because resume starts from the newest."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from incv4.trainer.checkpoint.store import Entry, Position

Retention = Callable[[List[Entry]], Tuple[List[Entry], List[Entry]]]


def latest_k(k: int) -> Retention:
    """Entries oldest first -> (kept, dropped): the newest k."""
    return lambda entries: (entries[-k:], entries[:-k])


def top_k(k: int) -> Retention:
    """Entries oldest first -> (kept, dropped), kept oldest first: the k best by top-1 plus the newest."""
    def retain(entries: List[Entry]) -> Tuple[List[Entry], List[Entry]]:
        # a stable sort keeps the older of equal top-1s first, as MindCV's sorted list does
        best = sorted(entries, key=lambda e: -float(e.extra.get("top1", 0.0)))[:k]
        keep = {id(e) for e in best + entries[-1:]}
        return [e for e in entries if id(e) in keep], [e for e in entries if id(e) not in keep]
    return retain


def keep_all(entries: List[Entry]) -> Tuple[List[Entry], List[Entry]]:
    return entries, []


def retention(policy: Optional[str], k: int) -> Retention:
    """The recipe's ckpt_save_policy (validated: latest_k, top_k or null) as a retention rule."""
    if policy is None:
        return keep_all
    return top_k(k) if policy == "top_k" else latest_k(k)


class CheckpointPolicy:
    def __init__(self, writer, save_interval: int, epochs: int, say: Callable[[str], None]):
        self.writer = writer
        self.save_interval = save_interval
        self.epochs = epochs
        self.say = say

    def due(self, epochs_done: int) -> bool:
        return epochs_done % self.save_interval == 0 or epochs_done == self.epochs

    def after_epoch(self, save_obj, position: Position, extra: Optional[dict] = None) -> None:
        """`extra` (the epoch's evaluation) goes into the manifest beside the checkpoint."""
        if self.writer is None or not self.due(position.epoch):
            return
        path = self.writer.save(save_obj, position, extra or {})
        if path:
            self.say(f"checkpoint {path}")

    def on_stop(self, save_obj, position: Position) -> None:
        if self.writer is not None:
            self.writer.save(save_obj, position)
