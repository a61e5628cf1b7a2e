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


# ------------------------------------------------------------------------------------------------------------
# resume_opt: the optimizer state of ckpt_path, with MindCV's create_optimizer(checkpoint_path=...) as the oracle

def _trained(steps: int, lr=(0.1,) * 10):
    net = _net(1.0)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=list(lr), momentum=0.9)
    train = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), optimizer)
    x, y = ms.Tensor(np.ones((4, 3), np.float32)), ms.Tensor(np.zeros((4, 2), np.float32))
    for _ in range(steps):
        train(x, y)
    return train, optimizer


def _state(optimizer) -> dict:
    return {p.name: p.asnumpy().copy() for p in optimizer.get_parameters() if p.name.startswith("moments.")
            or p.name == "global_step"}


def test_resume_opt_restores_what_mindcv_restores_and_continues_at_its_step(tmp_path, pynative):
    from incv4.trainer.checkpoint.resume import restore_optimizer_state

    optim_pkg = pytest.importorskip("mindcv.optim", reason="mindcv==0.3.0 (the dev extra) is the oracle")
    train, trained = _trained(3)
    path = str(tmp_path / "trained.ckpt")
    ms.save_checkpoint(train, path)
    _, fresh = _trained(0)
    lines = []
    position = restore_optimizer_state(fresh, path, steps_per_epoch=2, say=lines.append)
    assert position == Position(epoch=1, global_step=3, step_in_epoch=1)
    theirs = optim_pkg.create_optimizer(_net(1.0), opt="momentum", lr=[0.1] * 10, momentum=0.9, checkpoint_path=path)
    expected, ours = _state(theirs), _state(fresh)
    assert sorted(ours) == sorted(expected) == ["global_step", "moments.bias", "moments.weight"]
    for name in expected:
        np.testing.assert_array_equal(ours[name], expected[name])
        np.testing.assert_array_equal(ours[name], _state(trained)[name])
    assert np.abs(ours["moments.weight"]).max() > 0
    assert lines == [f"resume_opt: optimizer state (3 tensors) from {path}; continuing at step 3"]


def test_mindcv_optim_file_in_ckpt_save_dir_comes_first(tmp_path):
    from incv4.trainer.checkpoint.resume import optimizer_state_source

    given = str(tmp_path / "weights.ckpt")
    assert optimizer_state_source(given, str(tmp_path), "inception_v4") == given
    (tmp_path / "optim_inception_v4.ckpt").write_bytes(b"")
    assert optimizer_state_source(given, str(tmp_path), "inception_v4") == str(tmp_path / "optim_inception_v4.ckpt")


def test_resume_opt_from_weights_alone_is_one_line(tmp_path, pynative):
    from incv4.trainer.checkpoint.resume import restore_optimizer_state

    path = str(tmp_path / "weights.ckpt")
    ms.save_checkpoint(_net(1.0), path)
    _, fresh = _trained(0)
    with pytest.raises(RecipeError) as info:
        restore_optimizer_state(fresh, path, 2, lambda _line: pytest.fail("no line on failure"))
    assert str(info.value) == (f"recipe key 'resume_opt': checkpoint '{path}' holds no optimizer state for this run "
                               "(3 tensors missing, e.g. global_step)")


def test_resume_opt_needs_ckpt_path():
    from incv4.trainer import recipe as rc

    with pytest.raises(RecipeError) as info:
        rc.validate({"resume_opt": True})
    assert str(info.value) == "recipe key 'resume_opt': needs ckpt_path (the checkpoint to resume the optimizer from)"
    assert rc.validate({"resume_opt": True, "ckpt_path": "w.ckpt", "opt": "momentum"}).resume_opt is True
