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

    assert set_up_device(SimpleNamespace(device_target="CPU", mode=0), 0, 1) == ("CPU", 0, 1)
