"""Supervision of one node's share of a training job: `Launcher` starts MindSpore's scheduler (node 0) and the local
workers, each in its own process group writing its own log file (<log dir>/worker_<rank>.log, scheduler.log), echoes
the node's first rank to stdout as `[rank N] ...`, and stops everything when a worker fails, the cluster does not
form, or the launcher is asked to stop. `run_node` does that with the node's /metrics served meanwhile.
The exit codes it returns are described in launch.py (and trainer/contract.py).

A process that dies from a crash signal (SIGFPE, SIGSEGV, ...) may have died inside MindSpore's image decoder on
an image the data check could not fault: each worker gets a data trail (trainer/data/pipeline.py), and
`data_crash_line` replays it to name the image. That is a data error, permanent: exit USAGE, never a retry.
`run_guarded` gives `incv4 train --workers 1` and `incv4 validate`, which work in their own process, the same.

In-pod restarts (`--max-restarts N`, one node only) follow torchrun's agent (pytorch/pytorch,
torch/distributed/elastic/agent/server/api.py, `SimpleElasticAgent._invoke_run`): when the worker group fails and
restarts remain, the whole local group is stopped and started again, never one worker alone. Unlike torchrun, only a
retryable outcome (`RESTARTABLE`) is restarted: a permanent code (2, 4), a data crash or a stop request is final.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable, List, Optional, Sequence

from incv4.trainer import contract
from incv4.trainer.contract import DATA_TRAIL_ENV
from incv4.trainer.launcher import cpu_binding
from incv4.trainer.launcher.environment import default_threads_per_worker, scheduler_env, worker_env
from incv4.trainer.launcher.topology import Topology
from incv4.trainer.metrics import exporter as metrics_lib

# MindSpore prints this (GLOG level WARNING) in every process once all peers registered with the scheduler.
CLUSTER_READY_MARK = "Cluster is successfully initialized"
# Final errors MindSpore prints when the cluster cannot form (as opposed to a crash after it formed).
CLUSTER_FAILED_MARKS = ("Failed to initialize cluster", "Failed to connect to the meta server",
                        "Building networking for")
# A process's first line from MindSpore's DISTRIBUTED module: it called mindspore.communication.init() and is joining.
_JOINING = re.compile(r"^\[(WARNING|ERROR|INFO)\] DISTRIBUTED\(")
# MindSpore's own INFO/WARNING lines (`[WARNING] DISTRIBUTED(123,7f..,python):...`): kept in the log file, not echoed.
_MINDSPORE_NOISE = re.compile(r"^\[(WARNING|INFO|DEBUG)\] [A-Z_]+\(\d+[,:]")
_POLL_SECONDS = 0.2
_SCHEDULER_EXIT_WAIT = 30.0  # after the workers finished, the scheduler unregisters them and exits by itself
# Signals a native decoder dies from on a malformed image (SIGKILL is the OOM killer's or ours: not a decoder).
CRASH_SIGNALS = (signal.SIGFPE, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGABRT)
# Outcomes a fresh start of the local group can cure (a crash, a kill that is not a data crash, peers that never came).
RESTARTABLE = (contract.FAILURE, contract.PEER_TIMEOUT)

# The scheduler only runs MindSpore's meta server: no need to import the trainer or touch a device.
SCHEDULER_CODE = ("import mindspore as ms\n"
                  "ms.set_device('CPU')\n"
                  "from mindspore.communication import init\n"
                  "init()\n")


def is_noise(line: str) -> bool:
    return bool(_MINDSPORE_NOISE.match(line))


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the launcher dies, so a killed launcher never leaves orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def _child_setup(cpus: Optional[Sequence[int]]) -> Callable[[], None]:
    """What the child does before exec: die with the launcher and, with --bind-core, take its CPU share (the whole
    process, every thread it will start, as msrun's `taskset -c`)."""
    if cpus is None:
        return _die_with_parent

    def setup() -> None:
        _die_with_parent()
        cpu_binding.bind_process(cpus)

    return setup


@dataclass
class _Process:
    """One child process, its log file and what the launcher learned from it."""
    name: str  # "rank 3" or "scheduler"
    rank: Optional[int]
    popen: subprocess.Popen
    log_path: str
    exit_code: Optional[int] = None
    trail_path: Optional[str] = None  # its data trail (trainer/data/pipeline.py), workers only
    joining_since: Optional[float] = None  # monotonic time its first cluster line was seen
    ready: bool = False
    failed_to_form: bool = False
    _offset: int = 0
    _partial: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=200))

    def read_new_lines(self) -> List[str]:
        """Complete lines appended to the log since the last call (also remembered in `tail`)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return []
        if not chunk:
            return []
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.tail.append(line)
            if self.joining_since is None and _JOINING.match(line):
                self.joining_since = time.monotonic()
            if not self.ready and CLUSTER_READY_MARK in line:
                self.ready = True
            elif not self.ready and any(mark in line for mark in CLUSTER_FAILED_MARKS):
                self.failed_to_form = True
        return lines

    def last_lines(self, count: int = 15) -> List[str]:
        meaningful = [line for line in self.tail if line.strip() and not is_noise(line)]
        return (meaningful or [line for line in self.tail if line.strip()])[-count:]

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # the child is its group's leader (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass


class Launcher:
    """Starts the scheduler (node 0) and the local workers, then supervises them until they finish, one fails, the
    cluster fails to form, or the launcher is asked to stop."""

    def __init__(self, topology: Topology, worker_command: Sequence[str], log_dir: str, *,
                 cluster_timeout: int, grace_period: float,
                 threads_per_worker: int = 0, compile_cache: Optional[str] = None, max_restarts: int = 0,
                 bind_core: bool = False, out: IO[str] = None, err: IO[str] = None):
        if max_restarts and topology.nodes > 1:
            raise ValueError(restarts_refusal(topology.nodes))
        self.topology = topology
        self.max_restarts = max_restarts
        self.compile_cache = compile_cache
        self.worker_command = list(worker_command)
        self.log_dir = os.path.abspath(log_dir)
        self.cluster_timeout = cluster_timeout
        self.grace_period = grace_period
        self.threads = threads_per_worker or default_threads_per_worker(topology.local_workers)
        # --bind-core: one CPU share per local worker, split from the CPUs this launcher may use (cpu_binding.py)
        self.pod_cpus = cpu_binding.pod_cpus() if bind_core else None
        self.cpu_shares = cpu_binding.split(self.pod_cpus, topology.local_workers) if bind_core else None
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.workers: List[_Process] = []
        self.scheduler: Optional[_Process] = None
        self._stop_signal: Optional[int] = None
        self._restarts = 0  # restarts of the local group done so far
        self._failure_cause = ""  # why the current attempt stopped: "rank 1 exited 1"
        self._outcome: Optional[int] = None  # what the current attempt was stopped with (None: it finished)

    # -- messages ---------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"[launch] {text}", file=self.err, flush=True)

    def echo(self, proc: _Process, line: str) -> None:
        if line.strip() and not is_noise(line):
            print(f"[{proc.name}] {line}", file=self.out, flush=True)

    # -- starting ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, rank: Optional[int], argv: List[str], env: dict, log_name: str,
               cpus: Optional[Sequence[int]] = None) -> _Process:
        log_path = os.path.join(self.log_dir, log_name)
        # A restart appends: the failed attempt's log stays readable above the marker line.
        with open(log_path, "a" if self._restarts else "w", encoding="utf-8") as log:
            if self._restarts:
                log.write(f"[launch] restart {self._restarts} of {self.max_restarts}: {self._failure_cause}\n")
                log.flush()
            offset = log.tell()
            popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_child_setup(cpus))
        return _Process(name=name, rank=rank, popen=popen, log_path=log_path, _offset=offset)

    def start(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        base = dict(os.environ)
        topo = self.topology
        if topo.runs_scheduler and topo.world_size > 1:
            self.scheduler = self._spawn("scheduler", None, [sys.executable, "-c", SCHEDULER_CODE],
                                         scheduler_env(base, topo, self.cluster_timeout), "scheduler.log")
        for local_rank in range(topo.local_workers):
            rank = topo.rank(local_rank)
            env = worker_env(base, topo, local_rank, self.cluster_timeout, self.threads, self.compile_cache)
            trail = os.path.join(self.log_dir, f"worker_{rank}.data-trail.json")
            _remove_quietly(trail)  # a previous run's trail (incv4's own file, like the log beside it)
            env[DATA_TRAIL_ENV] = trail
            cpus = self._cpu_share(local_rank, env)
            worker = self._spawn(f"rank {rank}", rank, self.worker_command, env, f"worker_{rank}.log", cpus)
            worker.trail_path = trail
            self.workers.append(worker)
        self.say(f"{topo.describe()}; {self.threads} CPU thread(s) per worker; logs in {self.log_dir}")
        if self.cpu_shares is not None and not self._restarts:
            self.say(cpu_binding.describe_plan(self.pod_cpus, self.cpu_shares))
        if self.compile_cache:
            self.say(f"graph compile cache: {self.compile_cache}")

    def _cpu_share(self, local_rank: int, env: dict) -> Optional[List[int]]:
        """This worker's CPU share (None without --bind-core), told to it in `env`; an outer run's share is not."""
        for key in (cpu_binding.CPU_SHARE_ENV, cpu_binding.MSRUN_CPU_LIST_ENV):
            env.pop(key, None)
        if self.cpu_shares is None:
            return None
        share = self.cpu_shares[local_rank]
        env.update(cpu_binding.worker_env(share))
        return share

    # -- supervising ------------------------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def run(self, metrics=None) -> int:
        """Start everything and supervise until the end; returns the launcher's exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                self.start()
                code = self._supervise(metrics)
                if not self._may_restart(code):
                    return code
                self._restart_group(metrics)
        finally:
            self._kill_everything()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _may_restart(self, code: int) -> bool:
        """torchrun's rule (restarts remain -> restart the group), for retryable outcomes only, never while the
        launcher itself is being stopped nor after a worker's 143 (an unclean stop after it is still exit 1)."""
        return (code in RESTARTABLE and self._outcome in RESTARTABLE and self._restarts < self.max_restarts
                and self._stop_signal is None and self.topology.nodes == 1)

    def _restart_group(self, metrics) -> None:
        """Stop what is left of this attempt (the scheduler too: the next attempt forms a fresh MindSpore cluster),
        count the restart for every local rank, and forget the attempt's processes."""
        self._restarts += 1
        self.say(f"restarting the local workers ({self._restarts} of {self.max_restarts}): {self._failure_cause}")
        self._kill_everything()
        if metrics is not None:
            for worker in self.workers:
                metrics.worker_restarted(worker.rank)
        self.workers = []
        self.scheduler = None  # `_failure_cause` stays: the next attempt's logs start with it

    def _supervise(self, metrics) -> int:
        echoed = self.workers[0]
        stop_deadline: Optional[float] = None
        outcome: Optional[int] = None  # the exit code once the launcher decided to stop the job
        while True:
            for proc in self._everyone():
                for line in proc.read_new_lines():
                    if proc is echoed:
                        self.echo(proc, line)
            first_failure = self._reap(metrics)
            now = time.monotonic()
            if outcome is None:
                outcome = self._decide(first_failure, now)
                if outcome is not None:
                    stop_deadline = now + self.grace_period
            if all(w.exit_code is not None for w in self.workers):
                break
            if stop_deadline is not None and now > stop_deadline:
                self._kill_stubborn_workers()
                stop_deadline = None
            time.sleep(_POLL_SECONDS)
        for line in echoed.read_new_lines():
            self.echo(echoed, line)
        self._outcome = outcome
        return self._final_code(outcome)

    def _everyone(self) -> List[_Process]:
        return self.workers + ([self.scheduler] if self.scheduler else [])

    def _reap(self, metrics) -> Optional[_Process]:
        """Record the exit codes of processes that ended since the last poll; return the first that failed (a
        worker, else the scheduler if it died while workers still run), or None."""
        failed = None
        for proc in self.workers:
            if proc.exit_code is None and proc.popen.poll() is not None:
                proc.exit_code = proc.popen.returncode
                proc.read_new_lines()
                if metrics is not None:
                    metrics.worker_exited(proc.rank, proc.exit_code)
                if proc.exit_code != 0 and failed is None:
                    failed = proc
        sched = self.scheduler
        if sched is not None and sched.exit_code is None and sched.popen.poll() is not None:
            sched.exit_code = sched.popen.returncode
            sched.read_new_lines()
            still_running = any(w.exit_code is None for w in self.workers)
            if sched.exit_code != 0 and still_running and failed is None:
                failed = sched
        return failed

    def _decide(self, first_failure: Optional[_Process], now: float) -> Optional[int]:
        """Whether to stop the job now, and with which exit code (None: let it run). A stop request comes first."""
        if self._stop_signal is not None:
            return self._forward_stop()
        if first_failure is not None:
            return self._stop_after_failure(first_failure)
        if self._waiting_for_cluster(now):
            return self._stop_after_timeout()
        return None

    def _kill_stubborn_workers(self) -> None:
        stubborn = [w.name for w in self.workers if w.exit_code is None]
        self.say(f"{', '.join(stubborn)} still running {self.grace_period:g}s after SIGTERM: SIGKILL")
        for proc in self.workers:
            proc.signal_group(signal.SIGKILL)

    def _final_code(self, outcome: Optional[int]) -> int:
        if outcome is None:  # every worker exited 0
            self._wait_for_scheduler()
            self.say(f"all {len(self.workers)} workers finished")
            return contract.OK
        if outcome == contract.TERMINATED:
            unclean = [w for w in self.workers if w.exit_code not in (0, contract.TERMINATED)]
            if unclean:
                self.say("not every worker stopped cleanly after SIGTERM: " + ", ".join(
                    f"{w.name} exit {_describe_code(w.exit_code)}" for w in unclean))
                return contract.FAILURE
            self.say(f"stopped on request; every worker exited cleanly (exit {contract.TERMINATED})")
        return outcome

    def _waiting_for_cluster(self, now: float) -> bool:
        """A live worker has been joining for longer than --cluster-timeout without the cluster forming. Counted
        from its init() call, as MindSpore's MS_TOPO_TIMEOUT is: the trainer's own start-up (imports, the data
        check) must not count against the peers."""
        return self.topology.world_size > 1 and any(
            w.exit_code is None and not w.ready and w.joining_since is not None
            and now - w.joining_since > self.cluster_timeout for w in self.workers)

    def _forward_stop(self) -> int:
        name = signal.Signals(self._stop_signal).name
        self.say(f"got {name}: asking every worker to save a checkpoint and stop (SIGTERM), "
                 f"SIGKILL after {self.grace_period:g}s")
        # Only the worker itself: its data-loader children must keep running while it finishes its checkpoint.
        for proc in self.workers:
            if proc.exit_code is None:
                try:
                    proc.popen.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        return contract.TERMINATED

    def _stop_after_failure(self, failed: _Process) -> int:
        code = failed.exit_code
        self._failure_cause = f"{failed.name} exited {_describe_code(code)}"
        self.say(f"{failed.name} failed with exit {_describe_code(code)}; stopping every other process "
                 f"(log: {failed.log_path})")
        for line in failed.last_lines():
            print(f"[{failed.name}] {line}", file=self.err, flush=True)
        self._terminate_all()
        data_crash = data_crash_line(failed.name, code, failed.trail_path)
        if data_crash:
            print(f"error: {data_crash}", file=self.err, flush=True)
            return contract.USAGE
        if failed.failed_to_form and not failed.ready:  # MindSpore's own MS_TOPO_TIMEOUT ended it
            self._say_peer_timeout()
            return contract.PEER_TIMEOUT
        if code in (contract.USAGE, contract.PEER_TIMEOUT, contract.DIVERGED, contract.TERMINATED):
            return code
        return contract.FAILURE

    def _say_peer_timeout(self) -> None:
        joined = sum(1 for w in self.workers if w.ready or w.exit_code == 0)
        self.say(f"peer timeout: the cluster of {self.topology.world_size} workers did not form within "
                 f"--cluster-timeout {self.cluster_timeout}s ({joined} of {len(self.workers)} local workers joined; "
                 f"scheduler {self.topology.master_addr}:{self.topology.master_port}): peers never arrived or the "
                 f"scheduler was unreachable")

    def _stop_after_timeout(self) -> int:
        self._failure_cause = f"the cluster did not form within --cluster-timeout {self.cluster_timeout}s"
        self._say_peer_timeout()
        self._terminate_all()
        return contract.PEER_TIMEOUT

    def _terminate_all(self) -> None:
        for proc in self._everyone():
            if proc.exit_code is None:
                proc.signal_group(signal.SIGTERM)

    def _wait_for_scheduler(self) -> None:
        sched = self.scheduler
        if sched is None or sched.exit_code is not None:
            return
        try:
            sched.exit_code = sched.popen.wait(timeout=_SCHEDULER_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.say(f"scheduler still running {_SCHEDULER_EXIT_WAIT:g}s after the workers finished: killed")

    def _kill_everything(self) -> None:
        """Whatever happened: no process of the job (nor a child of one) outlives the launcher."""
        for proc in self._everyone():
            proc.signal_group(signal.SIGKILL)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def restarts_refusal(nodes: int) -> str:
    """Why --max-restarts is refused for a job of several nodes (one line)."""
    return (f"--max-restarts restarts the workers of one node only, and this job has {nodes} nodes: their peers "
            f"in the other pods would have to restart too (that is Volcano's RestartJob policy); give "
            f"--max-restarts 0")


def _remove_quietly(path: str) -> None:
    for stale in (path, path + ".tmp"):
        try:
            os.remove(stale)
        except OSError:
            pass


def data_crash_line(name: str, code: Optional[int], trail_path: Optional[str]) -> Optional[str]:
    """The one-line data error for a process that died from a crash signal while its data trail shows an image
    that kills MindSpore's decoder; None when that is not what happened (or cannot be shown)."""
    if code is None or code >= 0 or -code not in CRASH_SIGNALS or not trail_path:
        return None
    from incv4.trainer.data.pipeline import find_crashing_image  # numpy and the listing: only after a crash

    image = find_crashing_image(trail_path)
    if image is None:
        return None
    return (f"data: {name} died from {signal.Signals(-code).name} in MindSpore's image decoder on {image} "
            f"(the data check's decoder accepts it; replace or remove the image: a restart cannot help)")


def _describe_code(code: Optional[int]) -> str:
    if code is None:
        return "none"
    if code < 0:
        try:
            return f"{code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


def run_node(topology: Topology, worker_command: Sequence[str], log_dir: str, *, cluster_timeout: int,
             grace_period: float, metrics_port: int, threads_per_worker: int = 0,
             compile_cache: Optional[str] = None, metrics_addr: str = metrics_lib.LOCAL_ADDR,
             max_restarts: int = 0, bind_core: bool = False) -> int:
    """Run one node's share of the job (scheduler on node 0, local workers everywhere) while serving the local
    ranks' /metrics on `metrics_addr`:`metrics_port` (0 = off), restarting the local group up to `max_restarts`
    times; returns the exit code. The one /metrics endpoint outlives every restart. A port that cannot be served is
    a usage error: one line, exit 2, nothing started."""
    metrics_dir = tempfile.mkdtemp(prefix="incv4-metrics-")
    server = None
    previous_dir = os.environ.get(metrics_lib.MULTIPROC_ENV)  # restored: `incv4 demo` and tests live on after this
    try:
        metrics_lib.prepare_multiprocess_dir(metrics_dir)
        try:
            server = metrics_lib.serve(metrics_port, addr=metrics_addr)
        except OSError as err:
            print(f"error: {err} (give --metrics-port 0 to turn metrics off)", file=sys.stderr)
            return contract.USAGE
        launcher_metrics = metrics_lib.LauncherMetrics(
            [topology.rank(i) for i in range(topology.local_workers)])
        launcher = Launcher(topology, worker_command, log_dir, cluster_timeout=cluster_timeout,
                            grace_period=grace_period, threads_per_worker=threads_per_worker,
                            compile_cache=compile_cache, max_restarts=max_restarts, bind_core=bind_core)
        return launcher.run(launcher_metrics)
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if previous_dir is None:
            os.environ.pop(metrics_lib.MULTIPROC_ENV, None)
        else:
            os.environ[metrics_lib.MULTIPROC_ENV] = previous_dir


def run_guarded(work: Callable[[], int], name: str) -> int:
    """Run `work` (it returns an exit code) in a forked child of this process, with a data trail, and return its
    exit code; a child that dies from a crash signal on an image is reported as `data_crash_line` says, exit USAGE,
    any other signal death in one line, exit FAILURE. SIGTERM is forwarded to the child; SIGINT is left to it (a
    terminal's Ctrl-C reaches both). Without real stdout/stderr files (click's test runner captures into this
    process's memory, which a child would not share) `work` runs here, unguarded."""
    if not _has_real_stdio():
        return work()
    trail = _guard_trail_path()
    previous = os.environ.get(DATA_TRAIL_ENV)
    os.environ[DATA_TRAIL_ENV] = trail
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(work)
        code = _wait_forwarding_sigterm(pid)
        crash = data_crash_line(name, code, trail)
        if crash:
            print(f"error: {crash}", file=sys.stderr, flush=True)
            return contract.USAGE
        if code < 0:
            print(f"error: {name} died from {_describe_code(code)}", file=sys.stderr, flush=True)
            return contract.FAILURE
        return code
    finally:
        if previous is None:
            os.environ.pop(DATA_TRAIL_ENV, None)
        else:
            os.environ[DATA_TRAIL_ENV] = previous
        _remove_quietly(trail)
        if os.path.basename(os.path.dirname(trail)).startswith("incv4-data-trail-"):
            shutil.rmtree(os.path.dirname(trail), ignore_errors=True)


def _guard_trail_path() -> str:
    """This process's data trail in a private folder of the temporary one; trails of guards that no longer run (one
    killed by SIGKILL cleans nothing up) are removed here."""
    folder = os.path.join(tempfile.gettempdir(), f"incv4-data-trails-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:  # planted by someone else: a trail of our own
        folder = tempfile.mkdtemp(prefix="incv4-data-trail-")
    for entry in os.listdir(folder):
        pid = entry.split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_quietly(os.path.join(folder, entry))
    return os.path.join(folder, f"{os.getpid()}.json")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _has_real_stdio() -> bool:
    try:
        sys.stdout.fileno()
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _run_child(work: Callable[[], int]) -> None:
    """In the forked child: run `work` and leave with its code, never returning into the parent's stack."""
    code = contract.FAILURE
    try:
        _die_with_parent()
        code = work()
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:  # what an uncaught exception would have printed in the unguarded process
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) and 0 <= code <= 255 else contract.FAILURE)


def _wait_forwarding_sigterm(pid: int) -> int:
    """The child's exit code (negative: the signal that ended it), forwarding SIGTERM to it meanwhile."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    try:
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    except ValueError:  # not the main thread: signals stay as they are
        previous = {}
    try:
        _, status = os.waitpid(pid, 0)  # retried after a forwarded signal (PEP 475)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return os.waitstatus_to_exitcode(status)
