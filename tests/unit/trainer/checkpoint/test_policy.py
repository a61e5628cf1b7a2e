"""The checkpoint policy on its own: saves after every ckpt_save_interval-th and the last epoch (with the epoch's
evaluation for the manifest), on SIGTERM without a log line, and never on a rank without a writer."""
from __future__ import annotations

import pytest

from incv4.trainer.checkpoint.policy import CheckpointPolicy
from incv4.trainer.checkpoint.store import Position


class Writer:
    def __init__(self, fail=False):
        self.saved = []
        self.fail = fail

    def save(self, save_obj, position, extra=None):
        self.saved.append((save_obj, position.epoch, position.global_step, extra))
        return None if self.fail else f"/ckpt/e{position.epoch}-s{position.global_step}.ckpt"


@pytest.mark.parametrize("interval, epochs, saved", [(1, 3, [1, 2, 3]), (2, 5, [2, 4, 5]), (10, 3, [3])])
def test_saves_every_interval_and_after_the_last_epoch(interval, epochs, saved):
    writer, lines = Writer(), []
    policy = CheckpointPolicy(writer, interval, epochs, lines.append)
    for epoch in range(1, epochs + 1):
        policy.after_epoch("step", Position(epoch=epoch, global_step=epoch * 10), {"top1": 0.5})
    assert [s[1] for s in writer.saved] == saved
    assert all(s[3] == {"top1": 0.5} for s in writer.saved)
    assert lines == [f"checkpoint /ckpt/e{e}-s{e * 10}.ckpt" for e in saved]


def test_an_epoch_without_evaluation_saves_an_empty_extra_and_a_failed_write_says_nothing_more():
    writer, lines = Writer(fail=True), []
    CheckpointPolicy(writer, 1, 2, lines.append).after_epoch("step", Position(epoch=1, global_step=4))
    assert writer.saved == [("step", 1, 4, {})]
    assert lines == []  # the writer has reported the failure in its own error line


def test_sigterm_saves_mid_epoch_without_a_checkpoint_line():
    writer, lines = Writer(), []
    CheckpointPolicy(writer, 5, 9, lines.append).on_stop("step", Position(epoch=0, global_step=3, step_in_epoch=3))
    assert writer.saved == [("step", 0, 3, None)]
    assert lines == []


def test_a_rank_without_a_writer_never_saves():
    policy = CheckpointPolicy(None, 1, 1, lambda line: pytest.fail(line))
    policy.after_epoch("step", Position(epoch=1, global_step=1))
    policy.on_stop("step", Position(epoch=0, global_step=1))
