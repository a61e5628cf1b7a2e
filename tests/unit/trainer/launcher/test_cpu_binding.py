"""--bind-core's pure parts (trainer/launcher/cpu_binding.py): the split of the pod's CPUs into one share per local
worker over many CPU sets, the cpuset list format, the launcher's one line, and why a worker's MindSpore cannot take
the share (found before calling set_cpu_affinity, which fails silently). The real processes: test_bind_core_workers.py.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import types

import pytest

from incv4.trainer.launcher import cpu_binding
from incv4.trainer.launcher.cpu_binding import describe_plan, format_cpus, parse_cpus, split

CPU_SETS = [list(range(n)) for n in (1, 2, 3, 7, 8, 16, 64, 128, 192)] + [
    [0, 1, 2, 3, 8, 9, 10, 11],  # a cpuset with a hole (two NUMA halves)
    list(range(4, 20)),  # not starting at 0, as a pod's cgroup cpuset rarely does
    list(range(0, 96, 2)),  # every other CPU (hyperthread siblings left out)
]


@pytest.mark.parametrize("cpus,workers", [(c, w) for c, w in itertools.product(CPU_SETS, (1, 2, 4, 8, 16))
                                          if len(c) >= w], ids=str)
def test_enough_cpus_give_disjoint_contiguous_shares_that_cover_the_pod(cpus, workers):
    shares = split(cpus, workers)
    assert len(shares) == workers
    assert sorted(itertools.chain.from_iterable(shares)) == sorted(cpus)  # disjoint and covering
    assert all(share for share in shares)
    per_worker = len(cpus) // workers  # msrun's equal distribution: the last worker takes the remainder
    assert [len(s) for s in shares] == [per_worker] * (workers - 1) + [len(cpus) - per_worker * (workers - 1)]
    positions = {cpu: i for i, cpu in enumerate(sorted(cpus))}
    for share in shares:  # contiguous in the pod's CPU list
        assert [positions[c] for c in share] == list(range(positions[share[0]], positions[share[0]] + len(share)))


def test_sixteen_cpus_per_npu_as_the_chart_sizes_a_pod():
    assert split(range(128), 8) == [list(range(16 * r, 16 * r + 16)) for r in range(8)]


@pytest.mark.parametrize("cpus,workers", [([0], 2), ([0, 1], 8), ([0, 1, 2], 8), ([5, 9], 3)], ids=str)
def test_fewer_cpus_than_workers_wrap_round_robin_one_cpu_each(cpus, workers):
    shares = split(cpus, workers)
    assert shares == [[cpus[rank % len(cpus)]] for rank in range(workers)]
    assert set(itertools.chain.from_iterable(shares)) == set(cpus)  # every CPU is used


def test_the_demo_on_two_cores_is_said_in_one_line():
    line = describe_plan([0, 1], split([0, 1], 8))
    assert line == ("bind-core: 2 CPU(s) for 8 workers: the shares wrap round-robin, one CPU each, shared by up "
                    "to 4 workers (0, 1, 0, 1, 0, 1, 0, 1)")
    assert describe_plan(list(range(4)), split(range(4), 2)) == (
        "bind-core: each worker on its own share of the 4 CPUs this launcher may use (0-1, 2-3)")


def test_nothing_to_split_is_a_programming_error():
    with pytest.raises(ValueError):
        split([], 2)
    with pytest.raises(ValueError):
        split([0], 0)


@pytest.mark.parametrize("cpus,text", [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([3, 4, 8, 9, 10, 12], "3-4,8-10,12"),
                                       ([], "")])
def test_cpu_lists_read_and_write_the_kernels_format(cpus, text):
    assert format_cpus(cpus) == text
    assert parse_cpus(text) == cpus


def test_the_worker_is_told_its_share_as_incv4_and_as_msrun_tell_it():
    assert cpu_binding.worker_env([4, 5, 6]) == {"INCV4_CPU_SHARE": "4-6", "MSRUN_CPU_LIST": "[4, 5, 6]"}


def test_a_worker_the_launcher_did_not_bind_leaves_mindspore_alone(monkeypatch):
    monkeypatch.delenv(cpu_binding.CPU_SHARE_ENV, raising=False)
    monkeypatch.setattr(cpu_binding, "_handed_to_mindspore", False)
    said = []
    assert cpu_binding.hand_to_mindspore(said.append) is None and said == []


@pytest.fixture
def fake_mindspore(monkeypatch):
    """A MindSpore without set_cpu_affinity, in place of the real module (whose call would bind this process)."""
    fake = types.ModuleType("mindspore")
    fake.__version__ = "2.2.14"
    fake.runtime = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "mindspore", fake)
    monkeypatch.setattr(cpu_binding, "_handed_to_mindspore", False)
    monkeypatch.setenv(cpu_binding.CPU_SHARE_ENV, "2-3")
    return fake


def test_a_mindspore_without_set_cpu_affinity_leaves_the_launchers_share_said_in_one_line(fake_mindspore):
    said = []
    assert cpu_binding.hand_to_mindspore(said.append) is False
    assert said == ["bind-core: CPUs 2-3, bound by incv4's launcher (MindSpore 2.2.14 has no "
                    "mindspore.runtime.set_cpu_affinity)"]
    assert cpu_binding.hand_to_mindspore(said.append) is None and len(said) == 1  # once per process


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["no file (cgroup v2)", "empty", "blank"])
def test_without_mindspores_cgroup_v1_cpuset_it_is_not_called(fake_mindspore, monkeypatch, tmp_path, content):
    """set_cpu_affinity logs a warning and binds nothing without the file: incv4 says so instead of calling it."""
    calls = []
    fake_mindspore.runtime.set_cpu_affinity = lambda *a, **k: calls.append(a)
    path = tmp_path / "cpuset.cpus"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(cpu_binding, "MINDSPORE_CPUSET", str(path))
    said = []
    assert cpu_binding.hand_to_mindspore(said.append) is False
    assert calls == [] and len(said) == 1
    assert said[0] == (f"bind-core: CPUs 2-3, bound by incv4's launcher (MindSpore's set_cpu_affinity binds nothing "
                       f"without {path} (a cgroup v1 file; absent under cgroup v2))")


def test_set_cpu_affinity_gets_the_share_as_msrun_hands_it_over_and_its_error_is_one_line(
        fake_mindspore, monkeypatch, tmp_path):
    (tmp_path / "cpuset.cpus").write_text("0-7\n")
    monkeypatch.setattr(cpu_binding, "MINDSPORE_CPUSET", str(tmp_path / "cpuset.cpus"))
    monkeypatch.delenv(cpu_binding.MSRUN_CPU_LIST_ENV, raising=False)
    seen = []

    def set_cpu_affinity(enable):
        seen.append((enable, os.environ[cpu_binding.MSRUN_CPU_LIST_ENV]))

    fake_mindspore.runtime.set_cpu_affinity = set_cpu_affinity
    said = []
    assert cpu_binding.hand_to_mindspore(said.append) is True
    assert seen == [(True, "[2, 3]")]
    assert said == ["bind-core: CPUs 2-3; MindSpore's set_cpu_affinity pins its main thread to them"]

    def refuse(_enable):
        raise RuntimeError("The 'mindspore.runtime.set_cpu_affinity' cannot be set repeatedly.")

    fake_mindspore.runtime.set_cpu_affinity = refuse
    monkeypatch.setattr(cpu_binding, "_handed_to_mindspore", False)
    said.clear()
    assert cpu_binding.hand_to_mindspore(said.append) is False
    assert said == ["bind-core: CPUs 2-3, bound by incv4's launcher (MindSpore's set_cpu_affinity failed: The "
                    "'mindspore.runtime.set_cpu_affinity' cannot be set repeatedly.)"]


def test_a_share_the_kernel_refuses_leaves_the_worker_unbound_and_its_log_says_so():
    """The pod's cpuset may shrink between the split and a worker's start: one line in that worker's log."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                          preexec_fn=lambda: cpu_binding.bind_process([4095]), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == str(cpu_binding.pod_cpus())
    assert proc.stderr == "bind-core: CPUs 4095 refused (Invalid argument); this worker is not bound\n"
