"""The environment of each process `incv4 launch` starts, as msrun sets it: MindSpore's dynamic-cluster variables
(MS_ROLE, MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM, MS_TOPO_TIMEOUT, MS_NODE_ID), the rank variables (RANK_ID,
RANK_SIZE, DEVICE_ID, LOCAL_RANK), the compile cache, and per-worker CPU thread counts, which each worker applies
with `apply_worker_settings()`."""
from __future__ import annotations

import os
from typing import Optional

from incv4.trainer.launcher import compile_share
from incv4.trainer.launcher.topology import Topology

# The CPU thread count the launcher chose for each worker; `apply_worker_settings()` (called by each worker) honours it.
THREADS_ENV = "INCV4_CPU_THREADS"

_worker_settings_applied = False


def apply_worker_settings() -> None:
    """Called by each worker right after importing MindSpore and before building anything: applies the thread
    counts the launcher chose (INCV4_CPU_THREADS) so N workers sharing a host do not oversubscribe its cores
    (MindSpore's CPU kernels default to 25 threads per process). Once per process: MindSpore refuses a second
    threads_num(), and a wrapper script (a test worker, the bench) may have called this before the trainer does."""
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
    env.setdefault("GLOG_v", "2")  # WARNING: the cluster-ready line the supervisor looks for is logged at this level
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
