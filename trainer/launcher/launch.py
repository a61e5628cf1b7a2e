"""`incv4 launch`: the pod's entrypoint, doing what `msrun --worker_num 8*N --local_worker_num 8 --master_addr ..
--node_rank i --join True` does, fed by Volcano's environment (see topology.py), and supervising the workers.

On node 0 it starts MindSpore's scheduler process (MS_ROLE=MS_SCHED); on every node it starts the local workers
(`python -m incv4.trainer.training.train ...`), each with the dynamic-cluster environment msrun sets (MS_ROLE=MS_WORKER,
MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM, MS_TOPO_TIMEOUT, MS_NODE_ID, RANK_ID, RANK_SIZE, DEVICE_ID) plus
LOCAL_RANK and per-worker CPU thread counts. Each process runs in its own process group and writes its own log file
(<log dir>/worker_<rank>.log, scheduler.log); the node's first rank is echoed to stdout as `[rank N] ...`.

Exit codes (trainer/contract.py), so Volcano policies can tell "retry" from "permanent":
  0    every worker finished.
  1    FAILURE (retryable): a worker or the scheduler crashed or was killed; the launcher stopped the others.
  2    USAGE (permanent): bad flags, recipe, data dir or Volcano environment; also when the first failing worker
       exited 2. Nothing was started, or a worker refused its input.
  3    PEER_TIMEOUT (retryable): the cluster did not form within --cluster-timeout (peers never arrived, or the
       scheduler was unreachable).
  4    DIVERGED (permanent): the first failing worker exited 4 (too many non-finite losses).
  143  TERMINATED (retryable): the launcher got SIGTERM/SIGINT, forwarded SIGTERM to every worker, and every worker
       stopped (after saving a checkpoint) within --grace-period. If one did not, the launcher exits 1.
A worker that fails first with 143 (stopped by someone else's SIGTERM) makes the launcher exit 143 too.
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Iterable, List, Optional, Sequence

import click

from incv4.trainer.launcher import compile_share
from incv4.trainer import contract
from incv4.trainer.launcher.topology import Topology, TopologyError, from_environment

DEFAULT_CLUSTER_TIMEOUT = 600  # seconds; msrun's --cluster_time_out default
DEFAULT_GRACE_PERIOD = contract.LAUNCH_GRACE_PERIOD  # seconds between SIGTERM and SIGKILL
WORKER_MODULE = "incv4.trainer.training.train"
# Env vars the launcher sets and `apply_worker_settings()` (called by each worker) honours.
THREADS_ENV = "INCV4_CPU_THREADS"

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

# The scheduler only runs MindSpore's meta server: no need to import the trainer or touch a device.
SCHEDULER_CODE = ("import mindspore as ms\n"
                  "ms.set_device('CPU')\n"
                  "from mindspore.communication import init\n"
                  "init()\n")


def is_noise(line: str) -> bool:
    return bool(_MINDSPORE_NOISE.match(line))


_worker_settings_applied = False


def apply_worker_settings() -> None:
    """Called by each worker right after importing MindSpore and before building anything: applies the thread
    counts the launcher chose (INCV4_CPU_THREADS) so N workers sharing a host do not oversubscribe its cores
    (MindSpore's CPU kernels default to 25 threads per process). Once per process: MindSpore refuses a second
    threads_num(), and a wrapper script (a test worker, the bench) may have called this before train.py does."""
    global _worker_settings_applied
    threads = os.environ.get(THREADS_ENV)
    if not threads or _worker_settings_applied:
        return
    _worker_settings_applied = True
    import mindspore as ms

    count = int(threads)
    ms.device_context.cpu.op_tuning.threads_num(count)
    ms.runtime.dispatch_threads_num(max(1, count))


def default_threads_per_worker(local_workers: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // local_workers)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the launcher dies, so a killed launcher never leaves orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def cluster_env(topology: Topology, cluster_timeout: int) -> dict:
    """What msrun exports to the scheduler and to every worker."""
    return {
        "MS_SCHED_HOST": topology.master_addr,
        "MS_SCHED_PORT": str(topology.master_port),
        "MS_WORKER_NUM": str(topology.world_size),
        "MS_TOPO_TIMEOUT": str(cluster_timeout),
        "RANK_SIZE": str(topology.world_size),
    }


def worker_env(base: dict, topology: Topology, local_rank: int, cluster_timeout: int, threads: int,
               compile_cache: Optional[str] = None) -> dict:
    rank = topology.rank(local_rank)
    env = dict(base)
    env.setdefault("GLOG_v", "2")  # WARNING: the cluster-ready line the watchdog looks for is logged at this level
    if compile_cache and compile_share.ENABLE_ENV not in env:
        # MindSpore keeps one cache per rank below this path (rank_<id>/): a restart skips the graph compile, and
        # the workers of a node share one compile (compile_share.py reads the same two variables).
        env.update({compile_share.ENABLE_ENV: "1", compile_share.PATH_ENV: compile_cache})
    env.update({
        "RANK_ID": str(rank),
        "RANK_SIZE": str(topology.world_size),
        "DEVICE_ID": str(local_rank),
        "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(topology.local_workers),
        "PYTHONUNBUFFERED": "1",
        THREADS_ENV: str(threads),
        "OMP_NUM_THREADS": str(threads),
    })
    if topology.world_size > 1:
        env.update(cluster_env(topology, cluster_timeout))
        env.update({"MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank)})
    else:
        # One process: no scheduler and no collectives; the worker must not call mindspore.communication.init().
        for key in ("MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID"):
            env.pop(key, None)
    return env


def scheduler_env(base: dict, topology: Topology, cluster_timeout: int) -> dict:
    env = dict(base)
    for key in ("MS_NODE_ID", "DEVICE_ID", "LOCAL_RANK"):
        env.pop(key, None)
    env.setdefault("GLOG_v", "2")
    env.update(cluster_env(topology, cluster_timeout))
    env.update({"MS_ROLE": "MS_SCHED", "RANK_ID": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


@dataclass
class _Process:
    """One child process, its log file and what the launcher learned from it."""
    name: str  # "rank 3" or "scheduler"
    rank: Optional[int]
    popen: subprocess.Popen
    log_path: str
    exit_code: Optional[int] = None
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
                 cluster_timeout: int = DEFAULT_CLUSTER_TIMEOUT, grace_period: float = DEFAULT_GRACE_PERIOD,
                 threads_per_worker: int = 0, compile_cache: Optional[str] = None,
                 out: IO[str] = None, err: IO[str] = None):
        self.topology = topology
        self.compile_cache = compile_cache
        self.worker_command = list(worker_command)
        self.log_dir = os.path.abspath(log_dir)
        self.cluster_timeout = cluster_timeout
        self.grace_period = grace_period
        self.threads = threads_per_worker or default_threads_per_worker(topology.local_workers)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.workers: List[_Process] = []
        self.scheduler: Optional[_Process] = None
        self._stop_signal: Optional[int] = None

    # -- messages ---------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"[launch] {text}", file=self.err, flush=True)

    def echo(self, proc: _Process, line: str) -> None:
        if line.strip() and not is_noise(line):
            print(f"[{proc.name}] {line}", file=self.out, flush=True)

    # -- starting ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, rank: Optional[int], argv: List[str], env: dict, log_name: str) -> _Process:
        log_path = os.path.join(self.log_dir, log_name)
        with open(log_path, "w", encoding="utf-8") as log:
            popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        return _Process(name=name, rank=rank, popen=popen, log_path=log_path)

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
            self.workers.append(self._spawn(f"rank {rank}", rank, self.worker_command, env, f"worker_{rank}.log"))
        self.say(f"{topo.describe()}; {self.threads} CPU thread(s) per worker; logs in {self.log_dir}")
        if self.compile_cache:
            self.say(f"graph compile cache: {self.compile_cache}")

    # -- supervising ------------------------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def run(self, metrics=None) -> int:
        """Start everything and supervise until the end; returns the launcher's exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            return self._supervise(metrics)
        finally:
            self._kill_everything()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self, metrics) -> int:
        echoed = self.workers[0]
        stop_deadline: Optional[float] = None
        outcome: Optional[int] = None  # the exit code once the launcher decided to stop the job
        first_failure: Optional[_Process] = None
        while True:
            for proc in self.workers + ([self.scheduler] if self.scheduler else []):
                for line in proc.read_new_lines():
                    if proc is echoed:
                        self.echo(proc, line)
            for proc in self.workers:
                if proc.exit_code is None and proc.popen.poll() is not None:
                    proc.exit_code = proc.popen.returncode
                    proc.read_new_lines()
                    if metrics is not None:
                        metrics.worker_exited(proc.rank, proc.exit_code)
                    if proc.exit_code != 0 and first_failure is None and outcome is None:
                        first_failure = proc
            sched = self.scheduler
            if sched is not None and sched.exit_code is None and sched.popen.poll() is not None:
                sched.exit_code = sched.popen.returncode
                sched.read_new_lines()
                still_running = any(w.exit_code is None for w in self.workers)
                if sched.exit_code != 0 and still_running and first_failure is None and outcome is None:
                    first_failure = sched

            now = time.monotonic()
            if outcome is None:
                if self._stop_signal is not None:
                    outcome = self._forward_stop()
                elif first_failure is not None:
                    outcome = self._stop_after_failure(first_failure)
                elif self._waiting_for_cluster(now):
                    outcome = self._stop_after_timeout()
                if outcome is not None:
                    stop_deadline = now + self.grace_period

            if all(w.exit_code is not None for w in self.workers):
                break
            if stop_deadline is not None and now > stop_deadline:
                stubborn = [w.name for w in self.workers if w.exit_code is None]
                self.say(f"{', '.join(stubborn)} still running {self.grace_period:g}s after SIGTERM: SIGKILL")
                for proc in self.workers:
                    proc.signal_group(signal.SIGKILL)
                stop_deadline = None
            time.sleep(_POLL_SECONDS)

        for line in echoed.read_new_lines():
            self.echo(echoed, line)
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
        self.say(f"{failed.name} failed with exit {_describe_code(code)}; stopping every other process "
                 f"(log: {failed.log_path})")
        for line in failed.last_lines():
            print(f"[{failed.name}] {line}", file=self.err, flush=True)
        self._terminate_all()
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
        self._say_peer_timeout()
        self._terminate_all()
        return contract.PEER_TIMEOUT

    def _terminate_all(self) -> None:
        for proc in self.workers + ([self.scheduler] if self.scheduler else []):
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
        for proc in self.workers + ([self.scheduler] if self.scheduler else []):
            proc.signal_group(signal.SIGKILL)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _describe_code(code: Optional[int]) -> str:
    if code is None:
        return "none"
    if code < 0:
        try:
            return f"{code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


def launch(topology: Topology, worker_command: Sequence[str], log_dir: str, *,
           cluster_timeout: int = DEFAULT_CLUSTER_TIMEOUT, grace_period: float = DEFAULT_GRACE_PERIOD,
           metrics_port: int = 0, threads_per_worker: int = 0, compile_cache: Optional[str] = None) -> int:
    """Run one node's share of the job (scheduler on node 0, local workers everywhere) with metrics; exit code."""
    from incv4.trainer.metrics import exporter as metrics_lib

    metrics_dir = tempfile.mkdtemp(prefix="incv4-metrics-")
    server = None
    try:
        metrics_lib.prepare_multiprocess_dir(metrics_dir)
        try:
            server = metrics_lib.serve(metrics_port)
        except OSError as err:
            print(f"error: {err} (give --metrics-port 0 to turn metrics off)", file=sys.stderr)
            return contract.USAGE
        launcher_metrics = metrics_lib.LauncherMetrics(
            [topology.rank(i) for i in range(topology.local_workers)])
        launcher = Launcher(topology, worker_command, log_dir, cluster_timeout=cluster_timeout,
                            grace_period=grace_period, threads_per_worker=threads_per_worker,
                            compile_cache=compile_cache)
        return launcher.run(launcher_metrics)
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(metrics_dir, ignore_errors=True)


# -- the recipe side: global batch, lr scaling, the worker command line ------------------------------------------

def plan_worker_args(recipe_path: Optional[str], overrides: Iterable[str], data_dir: Optional[str],
                     world_size: int, scale_lr: bool, extra_args: Iterable[str] = (),
                     say=None) -> tuple[list, object]:
    """Validate the recipe once (one-line RecipeError before anything starts), log the global batch, and build
    the arguments every worker gets. Returns (args, recipe)."""
    from incv4.trainer import recipe as recipe_lib

    say = say or (lambda text: print(f"[launch] {text}", file=sys.stderr, flush=True))
    overrides = list(overrides)
    recipe = recipe_lib.load(recipe_path, overrides, data_dir=data_dir)
    recipe_lib.require_data_dir(recipe, [recipe.train_split])
    global_batch = recipe.batch_size * world_size
    reference = recipe.reference_global_batch
    say(f"global batch {global_batch} = batch_size {recipe.batch_size} x {world_size} workers")
    extra_sets = [f"distribute={'True' if world_size > 1 else 'False'}"]
    if global_batch != reference:
        if scale_lr:
            scaled = recipe.lr * global_batch / reference
            say(f"--scale-lr: lr {recipe.lr:g} -> {scaled:g} (x {global_batch}/{reference}, linear scaling rule)")
            extra_sets.append(f"lr={scaled!r}")
            if recipe.min_lr > scaled:
                extra_sets.append(f"min_lr={scaled!r}")
        else:
            say(f"note: the recipe's reference global batch is {reference} (8 cards x {recipe.batch_size}); "
                f"lr {recipe.lr:g} is unchanged (give --scale-lr to scale it linearly to {global_batch})")
    args: list = []
    if recipe_path:
        args += ["--config", os.path.abspath(recipe_path)]
    if data_dir:
        args += ["--data-dir", os.path.abspath(data_dir)]
    for text in overrides + extra_sets:
        args += ["--set", text]
    return args + list(extra_args), recipe


def compile_cache_dir(recipe, world_size: int, worker_args: Sequence[str]) -> str:
    """<ckpt_save_dir>/compile_cache/<key>: the key covers everything that shapes the compiled graph (the trainer's
    code, MindSpore's version, the final recipe, the world size, the worker flags), so a cache is only ever reused
    by an identical restart, never by a changed network or recipe (MindSpore itself checks only the entry
    script's imports outside site-packages)."""
    import hashlib
    from importlib import metadata

    digest = hashlib.sha256()
    trainer_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the whole incv4.trainer package
    for source in sorted(pathlib.Path(trainer_dir).rglob("*.py")):
        digest.update(str(source.relative_to(trainer_dir)).encode() + source.read_bytes())
    try:
        digest.update(metadata.version("mindspore").encode())
    except metadata.PackageNotFoundError:
        pass
    digest.update(recipe.to_yaml().encode())
    digest.update(f"{world_size}\0{chr(0).join(worker_args)}".encode())
    return os.path.join(os.path.abspath(recipe.ckpt_save_dir), "compile_cache", digest.hexdigest()[:16])


def worker_command(args: Sequence[str], worker_script: Optional[str] = None) -> list:
    head = [sys.executable, worker_script] if worker_script else [sys.executable, "-m", WORKER_MODULE]
    return head + list(args)


def run_local(config: Optional[str], overrides: Iterable[str] = (), data_dir: Optional[str] = None,
              workers: int = 8, metrics_port: int = 0, scale_lr: bool = False, *extra_args: str,
              log_dir: Optional[str] = None, cluster_timeout: int = DEFAULT_CLUSTER_TIMEOUT,
              grace_period: float = DEFAULT_GRACE_PERIOD, threads_per_worker: int = 0,
              worker_script: Optional[str] = None, compile_cache: bool = True) -> int:
    """`incv4 train --workers N`: the launcher on one node (127.0.0.1, a free port). Raises RecipeError (one line)
    for a bad recipe or data dir before anything starts; otherwise returns the launcher's exit code."""
    topology = Topology(nodes=1, node_rank=0, master_addr="127.0.0.1", master_port=free_port(),
                        local_workers=workers)
    args, recipe = plan_worker_args(config, overrides, data_dir, topology.world_size, scale_lr, extra_args)
    cache = compile_cache_dir(recipe, topology.world_size, args) if compile_cache else None
    return launch(topology, worker_command(args, worker_script), log_dir or os.path.join(recipe.ckpt_save_dir, "logs"),
                  cluster_timeout=cluster_timeout, grace_period=grace_period, metrics_port=metrics_port,
                  threads_per_worker=threads_per_worker, compile_cache=cache)


@click.command("launch", context_settings={"ignore_unknown_options": True,
                                           "help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", type=click.Path(dir_okay=False), help="Recipe YAML (MindCV keys).")
@click.option("--data-dir", "--data_dir", "data_dir", help="ImageFolder root with train/ (and val/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key (repeatable).")
@click.option("--nodes", type=int, help="Node count [VC_WORKER_NUM].")
@click.option("--node-rank", type=int, help="This node's index [VC_TASK_INDEX].")
@click.option("--master-addr", help="Scheduler host [first of VC_WORKER_HOSTS, else /etc/volcano/worker.host].")
@click.option("--master-port", type=int, help="Scheduler port [8118].")
@click.option("--local-workers", type=int, help="Worker processes on this node, one per NPU [8].")
@click.option("--log-dir", help="Per-rank log files [<ckpt_save_dir>/logs].")
@click.option("--cluster-timeout", type=click.IntRange(min=1), default=DEFAULT_CLUSTER_TIMEOUT, show_default=True,
              help="Seconds for every peer to join before failing with exit 3.")
@click.option("--grace-period", type=click.FloatRange(min=0), default=DEFAULT_GRACE_PERIOD, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when stopping workers.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=contract.METRICS_PORT,
              show_default=True, help="Serve /metrics for the local ranks (0 = off).")
@click.option("--scale-lr", is_flag=True, help="Scale lr linearly when the global batch differs from the recipe's.")
@click.option("--threads-per-worker", type=click.IntRange(min=0), default=0,
              help="CPU threads per worker (0 = cores / local workers).")
@click.option("--compile-cache/--no-compile-cache", default=True, show_default=True,
              help="Keep MindSpore's compiled graphs under <ckpt_save_dir>/compile_cache: each graph is compiled "
                   "by the node's first worker and loaded by the others, and restarts skip compiling.")
@click.option("--worker-script", hidden=True, help="Run this Python file instead of the trainer (tests, benchmarks).")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def launch_command(config, data_dir, overrides, nodes, node_rank, master_addr, master_port, local_workers, log_dir,
                   cluster_timeout, grace_period, metrics_port, scale_lr, threads_per_worker, compile_cache,
                   worker_script, train_args):
    """Start this pod's share of a data-parallel training job (the scheduler on node 0, the local workers
    everywhere) from Volcano's environment, and supervise it. Arguments after `--` go to every worker."""
    from incv4.trainer.recipe import RecipeError

    try:
        topology = from_environment(nodes=nodes, node_rank=node_rank, master_addr=master_addr,
                                    master_port=master_port, local_workers=local_workers,
                                    resolve_timeout=min(60, cluster_timeout))
        args, recipe = plan_worker_args(config, overrides, data_dir, topology.world_size, scale_lr, train_args)
    except (TopologyError, RecipeError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(contract.USAGE)
    cache = compile_cache_dir(recipe, topology.world_size, args) if compile_cache else None
    code = launch(topology, worker_command(args, worker_script),
                  log_dir or os.path.join(recipe.ckpt_save_dir, "logs"), cluster_timeout=cluster_timeout,
                  grace_period=grace_period, metrics_port=metrics_port, threads_per_worker=threads_per_worker,
                  compile_cache=cache)
    sys.exit(code)


if __name__ == "__main__":
    launch_command(prog_name="incv4 launch")
