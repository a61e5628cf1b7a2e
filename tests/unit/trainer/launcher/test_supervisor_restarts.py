"""In-pod restarts (`--max-restarts N`, trainer/launcher/supervisor.py): which outcomes restart the local group,
how often, what is counted in incv4_worker_restarts_total and logged, and the refusals (several nodes; one worker in
this process). Fake workers stand in for the trainer: each follows a script of outcomes, one per attempt, read from
its rank's line of a plan file, and appends the attempt to a file so the test can count the starts."""
from __future__ import annotations

import io
import os
import sys
import urllib.request

import pytest
from click.testing import CliRunner

from incv4.trainer import contract
from incv4.trainer.launcher.launch import launch_command
from incv4.trainer.launcher.plan import free_port
from incv4.trainer.launcher.supervisor import Launcher, run_node
from incv4.trainer.launcher.topology import Topology
from incv4.trainer.metrics.exporter import LauncherMetrics, MULTIPROC_ENV

# argv: <plan dir>. Outcome words: ok, exit:<code>, kill (SIGKILL itself), wait (until stopped), stop-launcher,
# scrape:<port> (save the launcher's /metrics page, then exit 0), peers-then-exit:<code> (exit once every other rank
# has started this attempt, so a peer is never stopped before it records its start).
FAKE_WORKER = r"""
import os, signal, sys, time, urllib.request
folder, rank = sys.argv[1], os.environ["RANK_ID"]
with open(os.path.join(folder, f"attempts_{rank}"), "a") as fh:
    fh.write("x")
attempt = len(open(os.path.join(folder, f"attempts_{rank}")).read())
plan = open(os.path.join(folder, f"plan_{rank}")).read().split()
word = plan[min(attempt, len(plan)) - 1]
print(f"attempt {attempt} of rank {rank}: {word}", flush=True)
if word.startswith("peers-then-exit:"):
    deadline = time.time() + 60
    peers = [n for n in os.listdir(folder) if n.startswith("plan_") and n != f"plan_{rank}"]
    while time.time() < deadline and not all(
            os.path.exists(os.path.join(folder, "attempts_" + n[5:]))
            and len(open(os.path.join(folder, "attempts_" + n[5:])).read()) >= attempt for n in peers):
        time.sleep(0.05)
    sys.exit(int(word.split(":")[1]))
if word.startswith("exit:"):
    sys.exit(int(word[5:]))
if word == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if word == "wait":
    time.sleep(120)
if word == "stop-launcher":
    os.kill(os.getppid(), signal.SIGTERM)
    sys.exit(1)
if word.startswith("scrape:"):
    page = urllib.request.urlopen(f"http://127.0.0.1:{word[7:]}/metrics", timeout=30).read()
    open(os.path.join(folder, f"metrics_{rank}"), "wb").write(page)
"""


class _NoScheduler(Topology):
    """One node whose fake workers need no MindSpore scheduler (they never form a cluster)."""

    @property
    def runs_scheduler(self) -> bool:
        return False


def _plan(folder, **by_rank):
    for rank, words in by_rank.items():
        (folder / f"plan_{rank[1:]}").write_text(words)


def _attempts(folder, rank: int) -> int:
    path = folder / f"attempts_{rank}"
    return len(path.read_text()) if path.exists() else 0


def _launch(folder, workers: int, max_restarts: int, metrics=None):
    err = io.StringIO()
    launcher = Launcher(_NoScheduler(1, 0, "127.0.0.1", free_port(), workers),
                        [sys.executable, "-c", FAKE_WORKER, str(folder)], str(folder / "logs"), cluster_timeout=60,
                        grace_period=5, max_restarts=max_restarts, out=io.StringIO(), err=err)
    return launcher.run(metrics), err.getvalue()


def _restarts(metrics: LauncherMetrics) -> dict:
    restarts = [family for family in metrics.collect() if family.name == "incv4_worker_restarts"][0]
    return {sample.labels["rank"]: sample.value for sample in restarts.samples}


def test_a_failing_worker_restarts_the_whole_local_group_once_and_each_rank_is_counted(tmp_path):
    _plan(tmp_path, r0="wait ok", r1="peers-then-exit:1 ok")
    metrics = LauncherMetrics([0, 1])
    code, err = _launch(tmp_path, 2, max_restarts=3, metrics=metrics)
    assert code == contract.OK, err
    assert "[launch] restarting the local workers (1 of 3): rank 1 exited 1\n" in err
    assert err.count("restarting the local workers") == 1
    assert (_attempts(tmp_path, 0), _attempts(tmp_path, 1)) == (2, 2)  # rank 0 was stopped and started again too
    assert _restarts(metrics) == {"0": 1.0, "1": 1.0}
    log = (tmp_path / "logs" / "worker_1.log").read_text()  # the failed attempt's log is kept above the marker
    assert log.splitlines() == ["attempt 1 of rank 1: peers-then-exit:1", "[launch] restart 1 of 3: rank 1 exited 1",
                                "attempt 2 of rank 1: ok"]


def test_a_killed_worker_is_restarted(tmp_path):
    _plan(tmp_path, r0="kill ok")
    code, err = _launch(tmp_path, 1, max_restarts=1)
    assert code == contract.OK, err
    assert "restarting the local workers (1 of 1): rank 0 exited -9 (killed by SIGKILL)" in err


def test_when_the_restarts_are_used_up_the_last_failure_is_the_exit_code(tmp_path):
    _plan(tmp_path, r0="exit:1 exit:1 exit:3")
    metrics = LauncherMetrics([0])
    code, err = _launch(tmp_path, 1, max_restarts=2, metrics=metrics)
    assert code == contract.PEER_TIMEOUT, err
    assert _attempts(tmp_path, 0) == 3
    assert _restarts(metrics) == {"0": 2.0}
    assert "(2 of 2): rank 0 exited 1" in err and "(3 of 2)" not in err


@pytest.mark.parametrize("words, code", [
    ("exit:2 ok", contract.USAGE), ("exit:4 ok", contract.DIVERGED), ("exit:143 ok", contract.TERMINATED),
    ("stop-launcher ok", contract.FAILURE),  # the launcher is being stopped: its worker's exit 1 is not restarted
], ids=["usage", "diverged", "terminated", "launcher-stopped"])
def test_permanent_outcomes_and_stop_requests_never_restart(tmp_path, words, code):
    _plan(tmp_path, r0=words)
    metrics = LauncherMetrics([0])
    assert _launch(tmp_path, 1, max_restarts=3, metrics=metrics)[0] == code
    assert _attempts(tmp_path, 0) == 1
    assert _restarts(metrics) == {"0": 0.0}


def test_a_worker_stopped_by_sigterm_is_never_restarted_even_when_a_peer_then_stops_uncleanly(tmp_path):
    _plan(tmp_path, r0="exit:143 ok", r1="wait ok")  # rank 1 dies from the launcher's SIGTERM: exit 1, not 143
    code, err = _launch(tmp_path, 2, max_restarts=3)
    assert code == contract.FAILURE, err
    # Rank 1 may be stopped before its interpreter even starts (no attempt recorded): at most one start each.
    assert _attempts(tmp_path, 0) == 1 and _attempts(tmp_path, 1) <= 1
    assert "restarting" not in err


def test_without_max_restarts_a_failure_ends_the_run_as_before(tmp_path):
    _plan(tmp_path, r0="exit:1 ok")
    code, err = _launch(tmp_path, 1, max_restarts=0)
    assert code == contract.FAILURE and _attempts(tmp_path, 0) == 1
    assert "restarting" not in err


def test_one_metrics_endpoint_serves_across_restarts_and_the_counter_never_goes_back(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    port = free_port()
    _plan(tmp_path, r0=f"exit:1 exit:1 scrape:{port}")
    code = run_node(_NoScheduler(1, 0, "127.0.0.1", free_port(), 1), [sys.executable, "-c", FAKE_WORKER,
                                                                           str(tmp_path)],
                    str(tmp_path / "logs"), cluster_timeout=60, grace_period=5, metrics_port=port, max_restarts=2)
    assert code == contract.OK
    assert MULTIPROC_ENV not in os.environ  # the launcher's directory is gone, and so is its name
    page = (tmp_path / "metrics_0").read_text()
    assert 'incv4_worker_restarts_total{rank="0"} 2.0' in page
    assert 'incv4_worker_exits_total{rank="0",reason="failure"} 2.0' in page
    with pytest.raises(OSError):  # served by the launcher, gone with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_a_job_of_several_nodes_is_refused_in_one_line_exit_2(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Volcano's RestartJob"):
        Launcher(Topology(2, 0, "127.0.0.1", 8118, 1), ["true"], str(tmp_path), cluster_timeout=60,
                 grace_period=5, max_restarts=1)
    for key in ("VC_TASK_INDEX", "VK_TASK_INDEX", "VC_WORKER_NUM", "VC_WORKER_HOSTS"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "train").mkdir()
    # a master name that never resolves: the refusal comes before any wait for it
    argv = ["--nodes", "2", "--node-rank", "1", "--master-addr", "incv4-no-such-pod.invalid", "--max-restarts", "1",
            "--data-dir", str(tmp_path), "--metrics-port", "0"]
    result = CliRunner().invoke(launch_command, argv)
    assert result.exit_code == contract.USAGE, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --max-restarts restarts the workers of one node only, "
                                                   "and this job has 2 nodes"), result.output


def test_train_with_one_worker_refuses_max_restarts(tmp_path):
    from incv4.operator.cli import main

    result = CliRunner().invoke(main, ["train", "-c", "x.yaml", "--workers", "1", "--max-restarts", "2"])
    assert result.exit_code == contract.USAGE, result.output
    assert result.output.strip() == ("error: --max-restarts 2 restarts the launcher's workers; give --workers 2 "
                                     "or more")


def test_max_restarts_defaults_to_0_as_torchruns_on_both_commands():
    from incv4.trainer.cli import train_command

    for command in (launch_command, train_command):
        assert {p.name: p for p in command.params}["max_restarts"].default == 0
