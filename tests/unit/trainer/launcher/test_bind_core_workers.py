"""--bind-core with real worker processes: each worker reads its CPUs (os.sched_getaffinity) from inside itself
(tests/support/workers/affinity_worker.py) under the real Launcher, and MindSpore's set_cpu_affinity is seen to take
the share, or not, on this machine. The split over many CPU sets: test_cpu_binding.py. This machine's CPUs are
the pod: a 2-CPU machine runs 2 workers on {0} and {1}."""
from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from incv4.trainer.cli import DEMO_RECIPE
from incv4.trainer.launcher import cpu_binding
from incv4.trainer.launcher.plan import free_port
from incv4.trainer.launcher.supervisor import Launcher
from incv4.trainer.launcher.topology import Topology
from incv4.trainer.recipe import shipped_path

WORKER = pathlib.Path(__file__).resolve().parents[3] / "support" / "workers" / "affinity_worker.py"
POD_CPUS = cpu_binding.pod_cpus()
needs_two_cpus = pytest.mark.skipif(len(POD_CPUS) < 2, reason="needs 2 CPUs to give 2 workers disjoint shares")
needs_cgroup_v1 = pytest.mark.skipif(not os.path.exists(cpu_binding.MINDSPORE_CPUSET),
                                     reason=f"MindSpore's binding needs {cpu_binding.MINDSPORE_CPUSET} (cgroup v1)")


class _NoScheduler(Topology):
    """One node whose workers form no MindSpore cluster, so no scheduler is started."""

    @property
    def runs_scheduler(self) -> bool:
        return False


def _run(tmp_path, workers: int, bind_core: bool, *worker_flags: str) -> tuple:
    """Run `workers` affinity workers under the launcher; returns (exit code, launcher's stderr, reports by rank)."""
    err = io.StringIO()
    launcher = Launcher(_NoScheduler(1, 0, "127.0.0.1", free_port(), workers),
                        [sys.executable, str(WORKER), str(tmp_path), *worker_flags], str(tmp_path / "logs"),
                        cluster_timeout=60, grace_period=5, bind_core=bind_core, out=io.StringIO(), err=err)
    code = launcher.run()
    reports = [json.loads((tmp_path / f"affinity_{rank}.json").read_text()) if code == 0 else None
               for rank in range(workers)]
    return code, err.getvalue(), reports


@needs_two_cpus
def test_each_worker_runs_on_its_own_share_and_the_shares_cover_the_pod(tmp_path):
    workers = min(len(POD_CPUS), 4)
    code, err, reports = _run(tmp_path, workers, True)
    assert code == 0, err
    seen = [set(r["process"]) for r in reports]
    assert all(a.isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1:]), seen
    assert set().union(*seen) == set(POD_CPUS)
    assert [sorted(s) for s in seen] == cpu_binding.split(POD_CPUS, workers)
    assert [r["share_env"] for r in reports] == [cpu_binding.format_cpus(s) for s in seen]
    assert [r["msrun_cpu_list"] for r in reports] == [str(sorted(s)) for s in seen]  # as msrun exports it
    assert cpu_binding.describe_plan(POD_CPUS, cpu_binding.split(POD_CPUS, workers)) in err


def test_without_bind_core_every_worker_has_every_cpu_and_no_share(tmp_path, monkeypatch):
    monkeypatch.setenv(cpu_binding.CPU_SHARE_ENV, "0")  # an outer run's share is not passed on
    monkeypatch.setenv(cpu_binding.MSRUN_CPU_LIST_ENV, "[0]")
    code, err, reports = _run(tmp_path, 2, False)
    assert code == 0, err
    assert [r["process"] for r in reports] == [POD_CPUS, POD_CPUS]
    assert [(r["share_env"], r["msrun_cpu_list"]) for r in reports] == [(None, None), (None, None)]
    assert "bind-core" not in err


def test_more_workers_than_cpus_each_get_one_cpu_round_robin_and_the_launcher_says_so(tmp_path):
    workers = len(POD_CPUS) * 2
    code, err, reports = _run(tmp_path, workers, True)
    assert code == 0, err
    assert [r["process"] for r in reports] == [[POD_CPUS[rank % len(POD_CPUS)]] for rank in range(workers)]
    lines = [line for line in err.splitlines() if "bind-core" in line]
    assert len(lines) == 1 and "the shares wrap round-robin, one CPU each" in lines[0], err


@needs_two_cpus
@pytest.mark.parametrize("cgroup", ["v1", "v2"])
def test_under_the_launcher_the_worker_hands_its_share_to_mindspore_or_says_why_not(tmp_path, cgroup):
    """Where MindSpore can bind (its cgroup v1 cpuset file, as on this machine) it pins its main thread inside the
    share; where it cannot (pretended cgroup v2) the fallback line is logged. Either way the worker, every thread of
    it, stays on the share the launcher gave it."""
    if cgroup == "v1" and not os.path.exists(cpu_binding.MINDSPORE_CPUSET):
        pytest.skip(f"no {cpu_binding.MINDSPORE_CPUSET} here")
    flags = ["--mindspore"] + (["--no-cgroup-v1"] if cgroup == "v2" else [])
    code, err, reports = _run(tmp_path, 2, True, *flags)
    assert code == 0, err + "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    shares = cpu_binding.split(POD_CPUS, 2)
    for report, share in zip(reports, shares):
        assert report["process"] == share and report["main"] == share
        assert all(set(cpus) <= set(share) for cpus in report["threads"].values()), report["threads"]
        assert report["outcome"] is (cgroup == "v1")
        if cgroup == "v2":
            assert report["lines"] == [f"bind-core: CPUs {cpu_binding.format_cpus(share)}, bound by incv4's launcher "
                                       f"(MindSpore's set_cpu_affinity binds nothing without "
                                       f"/nonexistent/cgroup-v2/cpuset.cpus (a cgroup v1 file; absent under cgroup "
                                       f"v2))"]


@needs_two_cpus
@needs_cgroup_v1
def test_mindspores_binding_pins_threads_not_the_process(tmp_path):
    """What set_cpu_affinity does on its own (no launcher binding): the main thread moves to the share at the first
    graph run, threads MindSpore started before then keep every CPU. Why the launcher binds the whole process."""
    share = POD_CPUS[-1:]
    env = dict(os.environ, **{cpu_binding.CPU_SHARE_ENV: cpu_binding.format_cpus(share)})
    env.pop(cpu_binding.MSRUN_CPU_LIST_ENV, None)
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path), "--mindspore"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "affinity_0.json").read_text())
    assert report["outcome"] is True and report["process"] == POD_CPUS
    assert report["main"] == share
    assert report["threads"]["KernelThread_0"] == POD_CPUS  # MindSpore's CPU kernel pool is not bound


def _data_dir(tmp_path) -> str:
    from PIL import Image

    for folder in ("train", "val"):  # one class, one image each: enough for the launcher's data check
        (tmp_path / "data" / folder / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / folder / "a" / "0.jpg")
    return str(tmp_path / "data")


@pytest.mark.parametrize("flag,expected", [([], False), (["--bind-core"], True), (["--no-bind-core"], False)])
def test_launch_and_train_pass_bind_core_to_the_launcher(tmp_path, monkeypatch, flag, expected):
    """msrun's default (off) on both commands; the rendered pods turn it on (operator/render.py)."""
    from incv4.operator.cli import main
    from incv4.trainer.launcher import supervisor

    given = []
    monkeypatch.setattr(supervisor, "run_node", lambda *a, **k: given.append(k["bind_core"]) or 0)
    common = ["-c", shipped_path(DEMO_RECIPE), "--data-dir", _data_dir(tmp_path), "--set", "num_classes=1",
              "--set", f"ckpt_save_dir={tmp_path / 'ckpt'}", "--metrics-port", "0"]
    launch = CliRunner().invoke(main, ["launch", *common, "--nodes", "1", "--node-rank", "0", "--master-addr",
                                       "127.0.0.1", "--local-workers", "2", *flag])
    assert launch.exit_code == 0, launch.output
    train = CliRunner().invoke(main, ["train", *common, "--workers", "2", *flag])
    assert train.exit_code == 0, train.output
    assert given == [expected, expected]


def test_train_with_one_worker_says_its_share_is_every_cpu(tmp_path, monkeypatch):
    from incv4.trainer import cli

    monkeypatch.setattr(cli, "_train_here", lambda *a: 0)
    monkeypatch.setattr(cli, "_check_metrics_port", lambda port: None)
    said = []
    monkeypatch.setattr(cli, "_say", said.append)
    from incv4.trainer.launcher import supervisor

    monkeypatch.setattr(supervisor, "run_guarded", lambda work, name: work())
    assert cli.run_training(shipped_path(DEMO_RECIPE), ("num_classes=1",), _data_dir(tmp_path), 1, metrics_port=0,
                            bind_core=True) == 0
    assert said == [cpu_binding.describe_plan(POD_CPUS, [POD_CPUS]) + "; one worker: nothing to split"]
