"""The checkpoint policy on its own: saves after every ckpt_save_interval-th and the last epoch (with the epoch's
evaluation for the manifest), on SIGTERM without a log line, and never on a rank without a writer; and which
checkpoints stay under ckpt_save_policy, with MindCV's CheckpointManager as the oracle for top_k."""
from __future__ import annotations

import os

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


# ------------------------------------------------------------------------------------------------------------
# which checkpoints stay: MindCV's CheckpointManager (mindcv/utils/checkpoint_manager.py) as the oracle

TOP1_SEQUENCES = [
    [0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.6, 0.9, 0.0, 0.4],
    [0.5, 0.5, 0.5, 0.4, 0.5, 0.6],  # ties keep the older
    [0.9, 0.8, 0.7, 0.6, 0.5],  # falling: the first k stay, the newest beside them
]


def _mindcv_top_k(top1s, k, directory):
    ms = pytest.importorskip("mindspore")
    manager_mod = pytest.importorskip("mindcv.utils.checkpoint_manager", reason="mindcv==0.3.0 is the oracle")
    manager = manager_mod.CheckpointManager(ckpt_save_policy="top_k")
    net = ms.nn.Dense(2, 1)
    for epoch, top1 in enumerate(top1s, start=1):
        manager.save_ckpoint(net, num_ckpt=k, metric=top1, save_path=str(directory / f"mindcv-{epoch}.ckpt"))
    return {int(path.rsplit("-", 1)[1][:-len(".ckpt")]) for path, _ in manager.ckpoint_filelist}


@pytest.mark.parametrize("top1s", TOP1_SEQUENCES)
@pytest.mark.parametrize("k", [1, 3])
def test_top_k_keeps_what_mindcv_keeps_plus_the_newest(tmp_path, top1s, k):
    pytest.importorskip("mindspore")
    from mindspore import nn

    from incv4.trainer.checkpoint.policy import retention
    from incv4.trainer.checkpoint.store import CheckpointWriter, read_manifest

    theirs = _mindcv_top_k(top1s, k, tmp_path)
    ours_dir = tmp_path / "incv4"
    writer = CheckpointWriter(str(ours_dir), k, log=pytest.fail, retain=retention("top_k", k))
    net = nn.Dense(2, 1)
    for epoch, top1 in enumerate(top1s, start=1):
        assert writer.save(net, Position(epoch=epoch, global_step=epoch * 10), {"top1": top1})
        kept = {e.epoch for e in read_manifest(str(ours_dir))}
        files = {int(n[len("incv4-e"):len("incv4-e") + 4]) for n in os.listdir(ours_dir) if n.endswith(".ckpt")}
        assert files == kept
    assert kept == theirs | {len(top1s)}
    assert read_manifest(str(ours_dir))[-1].epoch == len(top1s)  # resume starts from the newest


def test_top_k_drops_a_sigterm_checkpoint_once_a_newer_one_exists(tmp_path):
    pytest.importorskip("mindspore")
    from mindspore import nn

    from incv4.trainer.checkpoint.policy import retention
    from incv4.trainer.checkpoint.store import CheckpointWriter, read_manifest

    writer = CheckpointWriter(str(tmp_path), 2, log=pytest.fail, retain=retention("top_k", 2))
    net = nn.Dense(2, 1)
    writer.save(net, Position(epoch=1, global_step=10), {"top1": 0.5})
    writer.save(net, Position(epoch=2, global_step=20), {"top1": 0.6})
    writer.save(net, Position(epoch=2, global_step=23, step_in_epoch=3))  # SIGTERM: no evaluation, the newest
    assert [e.global_step for e in read_manifest(str(tmp_path))] == [10, 20, 23]
    writer.save(net, Position(epoch=3, global_step=30), {"top1": 0.4})
    assert [e.global_step for e in read_manifest(str(tmp_path))] == [10, 20, 30]
    assert sorted(os.listdir(tmp_path)) == ["incv4-e0001-s000000010.ckpt", "incv4-e0002-s000000020.ckpt",
                                            "incv4-e0003-s000000030.ckpt", "manifest.json"]


def test_latest_k_and_null_retention():
    from incv4.trainer.checkpoint.policy import retention
    from incv4.trainer.checkpoint.store import Entry

    entries = [Entry(f"e{i}", i, i * 10, extra={"top1": 1.0 / i}) for i in range(1, 6)]
    kept, dropped = retention("latest_k", 2)(entries)
    assert [e.epoch for e in kept] == [4, 5] and [e.epoch for e in dropped] == [1, 2, 3]
    assert retention(None, 2)(entries) == (entries, [])  # MindCV's None: every checkpoint stays


def test_top_k_needs_evaluation_while_training():
    from incv4.trainer import recipe as rc

    with pytest.raises(rc.RecipeError) as info:
        rc.validate({"ckpt_save_policy": "top_k"})
    assert str(info.value) == ("recipe key 'ckpt_save_policy': top_k keeps the checkpoints with the best top-1 and "
                               "needs val_while_train: true")
    assert rc.validate({"ckpt_save_policy": "top_k", "val_while_train": True, "opt": "momentum"}).ckpt_save_policy == "top_k"
