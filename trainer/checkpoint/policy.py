"""When a run saves: after every `ckpt_save_interval`-th epoch and after the last one, and when SIGTERM stops it
mid-epoch. Only rank 0 writes (every rank holds the same weights); the other ranks have no writer."""
from __future__ import annotations

from typing import Callable, Optional

from incv4.trainer.checkpoint.store import Position


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
