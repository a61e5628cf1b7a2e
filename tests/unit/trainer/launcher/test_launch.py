"""`incv4 launch` with real processes and MindSpore's real collectives on the CPU: gradient averaging, a killed
worker, SIGTERM, peers that never come; and its one-line usage errors.

These use the small probe worker (tests/support/workers/probe.py, a BatchNorm-free MLP) instead of InceptionV4 to
stay fast; tests/e2e/test_launch_inception.py runs the real trainer on two simulated nodes. Every test starts the
launcher as its own process (`python -m incv4.trainer.launcher.launch`), as a pod would, and checks that no process
of the job is left alive afterwards by scanning /proc for the job's unique scheduler port in the environment.
Run them one at a time (several MindSpore processes each):
`flock /tmp/incv4-heavy.lock pytest tests/unit/trainer/launcher/test_launch.py`.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from incv4.trainer import contract
from incv4.trainer import contract
from incv4.trainer import options
from incv4.trainer.launcher.launch import launch_command
from incv4.trainer.launcher.plan import free_port

PROBE = str(pathlib.Path(__file__).resolve().parents[3] / "support" / "workers" / "probe.py")
HANG_GUARD = 180  # seconds: only so a broken launcher fails the test instead of hanging the suite


def job_processes(port: int) -> list:
    """PIDs of live processes (not zombies) whose environment carries this job's scheduler port."""
    marker = f"MS_SCHED_PORT={port}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in env and state != b"Z":
            found.append(int(entry))
    return found


class Job:
    """One `incv4 launch` process running probe workers."""

    def __init__(self, tmp_path: pathlib.Path, workers: int, *probe_args: str, port: int = 0, nodes: int = 1,
                 node_rank: int = 0, cluster_timeout: int = 120, grace: float = 5, name: str = "job"):
        self.out = tmp_path / name
        self.logs = self.out / "logs"
        data = tmp_path / "data"
        # launch checks the data before it starts anything: one class with one image (num_classes=1 below)
        (data / "train" / "a").mkdir(parents=True, exist_ok=True)
        if not (data / "train" / "a" / "0.jpg").exists():
            from PIL import Image
            Image.new("RGB", (8, 8)).save(data / "train" / "a" / "0.jpg")
        self.port = port or free_port()
        self.cmd = [sys.executable, "-m", "incv4.trainer.launcher.launch", "--worker-script", PROBE,
                    "--data-dir", str(data), "--set", "num_classes=1", "--set", "opt=momentum",  # not MindCV's adam
                    "--local-workers", str(workers), "--nodes", str(nodes),
                    "--node-rank", str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(self.port),
                    "--log-dir", str(self.logs), "--metrics-port", "0", "--cluster-timeout", str(cluster_timeout),
                    "--grace-period", str(grace), "--no-compile-cache", "--", "--out", str(self.out), *probe_args]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, timeout: float = HANG_GUARD) -> tuple:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"launcher still running after {timeout}s\n{err[-3000:]}")
        return self.proc.returncode, out, err

    def wait_for_steps(self, ranks, timeout: float = HANG_GUARD) -> None:
        """Until every rank in `ranks` has logged a training step (so the cluster formed and training runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [self.logs / f"worker_{r}.log" for r in ranks]
            if all(p.exists() and "step 1 rank" in p.read_text(errors="replace") for p in logs):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"launcher exited {self.proc.returncode} before training: {self.proc.stderr.read()}")
            time.sleep(0.5)
        pytest.fail(f"ranks {ranks} did not start training within {timeout}s")

    def pid(self, rank: int) -> int:
        return int((self.out / f"pid_rank{rank}").read_text())


@pytest.fixture
def reap():
    jobs = []
    yield jobs.append
    for job in jobs:  # a failing test must not leave MindSpore processes behind
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait()
        for pid in job_processes(job.port):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- gradient averaging ---------------------------------------------------------------------------------------

def test_one_step_with_8_workers_equals_one_process_with_the_8x_batch(tmp_path, reap):
    workers, per_worker = 8, 4
    job = Job(tmp_path, workers, "--steps", "1", "--global-batch", str(workers * per_worker))
    reap(job)
    code, out, err = job.finish()
    assert code == contract.OK, err[-3000:]
    assert "[rank 0] step 0 rank 0 loss" in out  # rank 0's lines are echoed with a prefix, MindSpore noise is not
    assert "[WARNING] DISTRIBUTED" not in out
    assert sorted(p.name for p in job.logs.iterdir()) == ["scheduler.log"] + sorted(
        f"worker_{r}.log" for r in range(workers))

    reference_dir = tmp_path / "single"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MS_", "RANK_"))}
    single = subprocess.run([sys.executable, PROBE, "--out", str(reference_dir), "--steps", "1",
                             "--global-batch", str(workers * per_worker)], env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    reference = np.load(reference_dir / "final_rank0.npz")
    initial_rng = np.random.RandomState(1234)
    initial_first_weight = initial_rng.randn(32, 16).astype(np.float32) * 0.3
    first = next(k for k in reference.files if k.endswith("weight"))
    assert not np.allclose(reference[first], initial_first_weight, atol=1e-3)  # the step really moved the weights

    for rank in range(workers):
        got = np.load(job.out / f"final_rank{rank}.npz")
        assert sorted(got.files) == sorted(reference.files)
        for name in reference.files:
            np.testing.assert_allclose(got[name], reference[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"rank {rank} {name}")
    assert job_processes(job.port) == []


# -- a killed worker stops the job -----------------------------------------------------------------------------

def test_sigkill_of_one_worker_stops_the_job_and_names_the_rank(tmp_path, reap):
    job = Job(tmp_path, 2, "--steps", "100000", "--step-sleep", "0.2", grace=5)
    reap(job)
    job.wait_for_steps([0, 1])
    os.kill(job.pid(1), signal.SIGKILL)
    killed_at = time.monotonic()
    code, _out, err = job.finish(timeout=60)
    assert time.monotonic() - killed_at < 60
    assert code == contract.FAILURE
    assert "rank 1 failed with exit -9 (killed by SIGKILL)" in err
    assert job_processes(job.port) == []


def test_first_failing_worker_exit_code_is_kept_when_it_is_permanent(tmp_path, reap):
    job = Job(tmp_path, 2, "--steps", "5", "--exit-at-step", "0", "--exit-rank", "1",
              "--exit-code", str(contract.DIVERGED))
    reap(job)
    code, _out, err = job.finish()
    assert code == contract.DIVERGED, err[-3000:]
    assert "rank 1 failed with exit 4" in err
    assert "[rank 1] exiting with 4 as asked" in err  # the failed rank's last log lines
    assert job_processes(job.port) == []


# -- SIGTERM to the launcher -----------------------------------------------------------------------------------

def test_sigterm_is_forwarded_and_every_worker_checkpoints(tmp_path, reap):
    job = Job(tmp_path, 2, "--steps", "100000", "--step-sleep", "0.2", grace=30)
    reap(job)
    job.wait_for_steps([0, 1])
    job.proc.send_signal(signal.SIGTERM)
    code, out, err = job.finish(timeout=90)
    assert code == contract.TERMINATED, err[-3000:]
    assert "got SIGTERM" in err
    for rank in (0, 1):
        assert (job.out / f"checkpoint_rank{rank}.npz").is_file()
    assert "[rank 0] SIGTERM: checkpoint saved" in out
    assert job_processes(job.port) == []


# -- peers that never come -------------------------------------------------------------------------------------

@pytest.mark.parametrize("node_rank", [0, 1], ids=["node0-alone", "node1-without-scheduler"])
def test_peers_that_never_come_end_in_a_peer_timeout(tmp_path, reap, node_rank):
    timeout = 15
    job = Job(tmp_path, 1, "--steps", "3", nodes=2, node_rank=node_rank, cluster_timeout=timeout)
    reap(job)
    code, _out, err = job.finish(timeout=timeout + 60)
    assert code == contract.PEER_TIMEOUT, err[-3000:]
    assert f"did not form within --cluster-timeout {timeout}s" in err
    assert "0 of 1 local workers joined" in err
    assert job_processes(job.port) == []


# -- no processes: environment, recipe and flags -----------------------------------------------------------------

@pytest.mark.parametrize("env, argv, message", [
    ({"VC_TASK_INDEX": "1"}, [], "VC_WORKER_NUM"),
    ({}, ["--set", "no_such_key=1"], "no_such_key"),
    ({}, ["--data-dir", "/nonexistent/incv4"], "data_dir"),
])
def test_bad_environment_or_recipe_is_one_line_and_exit_2(env, argv, message, monkeypatch, tmp_path):
    for key in ("VC_TASK_INDEX", "VK_TASK_INDEX", "VC_WORKER_NUM", "VC_WORKER_HOSTS"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "train").mkdir()
    argv = argv if "--data-dir" in argv else argv + ["--data-dir", str(tmp_path)]
    result = CliRunner().invoke(launch_command, argv + ["--set", "opt=momentum", "--metrics-port", "0"], env=env)
    assert result.exit_code == contract.USAGE
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output


def test_a_master_name_that_never_resolves_is_a_retryable_peer_timeout(monkeypatch, tmp_path):
    # Pod 0's DNS record appears only once its pod is up (a slow volume attach): retry the job, never abort it.
    for key in ("VC_TASK_INDEX", "VK_TASK_INDEX", "VC_WORKER_NUM", "VC_WORKER_HOSTS"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "train").mkdir()
    argv = ["--nodes", "2", "--node-rank", "1", "--master-addr", "incv4-no-such-pod.invalid", "--cluster-timeout", "3",
            "--data-dir", str(tmp_path), "--metrics-port", "0"]
    result = CliRunner().invoke(launch_command, argv)  # the wait itself: test_topology.py, on a fake clock
    assert result.exit_code == contract.PEER_TIMEOUT, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "incv4-no-such-pod.invalid" in lines[0], result.output


def test_launch_takes_its_defaults_from_the_shared_options_and_the_contract():
    params = {param.name: param for param in launch_command.params}
    assert params["metrics_port"].default == contract.METRICS_PORT
    assert params["grace_period"].default == contract.LAUNCH_GRACE_PERIOD  # the pod's grace period outlasts it
    assert params["cluster_timeout"].default == options.CLUSTER_TIMEOUT
    assert not params["config"].required  # the in-pod command may run on the recipe's defaults
