"""The process's place in the run, from the launcher's (or msrun's) environment, and the device choice."""
from __future__ import annotations

import pytest

from incv4.trainer.training.world import choose_device, world_from_env


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1)),
    ({"RANK_SIZE": "4", "RANK_ID": "3"}, (3, 4)),
    ({"MS_WORKER_NUM": "2", "MS_NODE_ID": "1"}, (1, 2)),
    ({"RANK_SIZE": "1", "RANK_ID": "5"}, (0, 1)),  # a lone process is rank 0 whatever is set
])
def test_world_from_env(monkeypatch, env, expected):
    for name in ("RANK_SIZE", "RANK_ID", "MS_WORKER_NUM", "MS_NODE_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert world_from_env() == expected


def test_a_device_this_build_lacks_falls_back_to_the_cpu_with_a_line():
    pytest.importorskip("mindspore")
    lines = []
    assert choose_device("CPU", lines.append) == "CPU" and lines == []
    assert choose_device("Ascend", lines.append) == "CPU"  # the CPU build of MindSpore
    assert lines == ["device_target Ascend: this MindSpore build has no Ascend backend; running on CPU"]


def test_a_lone_process_sets_up_the_cpu_without_collectives():
    pytest.importorskip("mindspore")
    from types import SimpleNamespace

    from incv4.trainer.training.world import set_up_device

    assert set_up_device(SimpleNamespace(device_target="CPU", mode=0, jit_level="O2"), 0, 1) == ("CPU", 0, 1)


def test_amp_levels_are_a_logged_no_op_on_the_cpu_only():
    from incv4.trainer.training.world import usable_amp_level

    lines = []
    assert usable_amp_level("val_amp_level", "O2", "Ascend", lines.append) == "O2" and lines == []
    assert usable_amp_level("val_amp_level", "O0", "CPU", lines.append) == "O0" and lines == []
    assert usable_amp_level("val_amp_level", "O3", "CPU", lines.append) == "O0"
    assert lines == ["val_amp_level O3: the CPU has no float16 kernels for this network; using O0 (float32)"]


def test_jit_level_defaults_to_mindcvs_o2_and_is_checked():
    from incv4.trainer import recipe as rc

    assert rc.validate({"opt": "momentum"}).jit_level == "O2"  # MindCV's train.py for MindSpore 2.3 (853084f)
    with pytest.raises(rc.RecipeError, match=r"^recipe key 'jit_level': must be one of O0, O1, O2; got 'O3'$"):
        rc.validate({"jit_level": "O3"})


def test_jit_level_is_applied_in_graph_mode_on_ascend_only(monkeypatch):
    ms = pytest.importorskip("mindspore")
    from incv4.trainer.training.world import apply_jit_level

    calls, lines = [], []
    # recorded, not set: the CPU build would take it, and it would stay set for the rest of this test process
    monkeypatch.setattr(ms, "set_context", lambda **kwargs: calls.append(kwargs))
    assert apply_jit_level("O0", 0, "Ascend", lines.append) is True
    assert calls == [{"jit_config": {"jit_level": "O0"}}]
    assert lines == ["jit_level O0: graph mode with jit_config jit_level O0"]
    lines.clear()
    assert apply_jit_level("O2", 1, "Ascend", lines.append) is False
    assert apply_jit_level("O2", 0, "CPU", lines.append) is False
    assert len(calls) == 1  # the no-ops set nothing
    assert lines == ["jit_level O2: not applied in PyNative mode (MindSpore's jit_config is for graph mode)",
                     "jit_level O2: not applied on CPU (it selects how Ascend runs a graph); CPU compiles the graph "
                     "as MindSpore does by default"]
