"""Where a run starts: the newest checkpoint restored into the train step, the beginning when there is none,
--no-resume setting the previous run aside (rank 0 only), and a checkpoint of another network refused in one line."""
from __future__ import annotations

import os

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from incv4.trainer.checkpoint.resume import starting_position  # noqa: E402
from incv4.trainer.checkpoint.store import CheckpointWriter, Position  # noqa: E402
from incv4.trainer.recipe import RecipeError  # noqa: E402


def _net(value: float, outputs: int = 2) -> nn.Cell:
    net = nn.Dense(3, outputs)
    net.weight.set_data(ms.Tensor(np.full((outputs, 3), value, np.float32)))
    return net


def _save(directory, value, position):
    CheckpointWriter(str(directory), 3, log=lambda _line: None).save(_net(value), position)


def test_the_newest_checkpoint_is_restored_and_named(tmp_path):
    _save(tmp_path, 1.0, Position(epoch=1, global_step=5))
    _save(tmp_path, 2.0, Position(epoch=1, global_step=7, step_in_epoch=2))
    (tmp_path / ".tmp-incv4-e0002-s000000010.ckpt").write_bytes(b"half")  # a killed writer's leftover
    net, lines = _net(0.0), []
    position = starting_position(str(tmp_path), net, rank=0, resume=True, total_steps=20, say=lines.append)
    assert position == Position(epoch=1, global_step=7, step_in_epoch=2)
    assert np.all(net.weight.asnumpy() == 2.0)
    assert lines == [f"resuming from {tmp_path / 'incv4-e0001-s000000007.ckpt'}: epoch 1, step 7/20"]
    assert not (tmp_path / ".tmp-incv4-e0002-s000000010.ckpt").exists()


def test_nothing_to_resume_is_the_beginning(tmp_path):
    lines = []
    assert starting_position(str(tmp_path / "absent"), _net(0.0), 0, True, 20, lines.append) == Position()
    assert lines == []


def test_no_resume_sets_the_previous_run_aside_on_rank_0_only(tmp_path):
    _save(tmp_path, 1.0, Position(epoch=1, global_step=5))
    lines = []
    assert starting_position(str(tmp_path), _net(0.0), 1, False, 20, lines.append) == Position()
    assert lines == [] and os.path.exists(tmp_path / "incv4-e0001-s000000005.ckpt")
    net = _net(0.0)
    assert starting_position(str(tmp_path), net, 0, False, 20, lines.append) == Position()
    assert np.all(net.weight.asnumpy() == 0.0)
    assert len(lines) == 1 and lines[0].startswith("--no-resume: starting fresh; the previous run's checkpoints "
                                                   f"moved to {tmp_path / 'replaced-'}")
    assert not os.path.exists(tmp_path / "incv4-e0001-s000000005.ckpt")


def test_a_checkpoint_of_another_network_is_a_recipe_error(tmp_path):
    _save(tmp_path, 1.0, Position(epoch=1, global_step=5))
    with pytest.raises(RecipeError, match=r"ckpt_save_dir.*another network.*--no-resume"):
        starting_position(str(tmp_path), _net(0.0, outputs=4), 0, True, 20, lambda _line: None)
