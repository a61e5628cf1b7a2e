"""Case `startup`: the start-up protocol's work per node at 128 nodes against the same at 2 nodes, measured in one
run: each node finds its place from the environment Volcano gives its pod (trainer/launcher/topology.py, with a fake
DNS answering at once) and its 8 workers share one compile of each of two graphs (trainer/launcher/compile_share.py,
fake compiles writing 4 KB graph files) in a cache root every node of the job shares, as the checkpoint volume is.

A node's figure is the median wall time of its own work over all its node's runs, so what grows with the job (the
host list Volcano hands every pod, the other nodes' folders in the shared cache root) shows as a ratio above 1.
tests/unit/trainer/launcher/test_startup_scale.py counts the same work (resolver calls, variables read,
file-system calls) instead of timing it."""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from bench.common import median
from bench.results import Row

LOCAL_WORKERS, GRAPHS, LARGE, SMALL = 8, 2, 128, 2


class _FakeCompile:
    """What MindSpore's compile cache writes on a first compile: the process's next graph file."""

    def __init__(self, root: str, rank: int):
        self.folder, self.count = os.path.join(root, f"rank_{rank}", "graph_cache"), 0

    def compile(self, *_args):
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f"MS_WORKERcompile_cache_{self.count}.mindir"), "wb") as fh:
            fh.write(b"g" * 4096)
        self.count += 1


def _volcano_env(nodes: int, index: int) -> dict:
    hosts = ",".join(f"run-worker-{i}.run" for i in range(nodes))
    return {"VC_TASK_INDEX": str(index), "VK_TASK_INDEX": str(index), "VC_WORKER_HOSTS": hosts,
            "VC_WORKER_NUM": str(nodes), "HOSTNAME": f"run-worker-{index}"}


def _one_node(nodes: int, index: int, root: str, no_hosts: str) -> float:
    from incv4.trainer.launcher import topology
    from incv4.trainer.launcher.compile_share import CompileSharing

    started = time.perf_counter()
    topology.from_environment(_volcano_env(nodes, index), hosts_dir=no_hosts, resolver=lambda _host: "10.0.0.1")
    first = index * LOCAL_WORKERS
    for local_rank in range(LOCAL_WORKERS):  # the leader first: its followers find its files at once
        sharing = CompileSharing(root, rank=first + local_rank, local_rank=local_rank,
                                 local_workers=LOCAL_WORKERS, timeout=5)
        cell = _FakeCompile(root, first) if local_rank == 0 else object()
        for _ in range(GRAPHS):
            sharing.before_first_call(cell)
    return time.perf_counter() - started


def _per_node(nodes: int) -> float:
    """Median seconds of one node's start-up work, every node of a `nodes`-node job run in turn."""
    # In memory where the machine has it: the protocol's work is timed, not this disk's latency under other load.
    work = tempfile.mkdtemp(prefix="incv4-bench-startup-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        root = os.path.join(work, "compile_cache")
        return median([_one_node(nodes, index, root, os.path.join(work, "no-hosts")) for index in range(nodes)])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    rounds = 1 if quick else 5
    small, large = [], []
    for _ in range(rounds):  # alternating
        small.append(_per_node(SMALL))
        large.append(_per_node(LARGE))
        log(f"  [startup] per node: {SMALL} nodes {small[-1] * 1e3:.2f} ms, {LARGE} nodes {large[-1] * 1e3:.2f} ms")
    rows = [Row(f"start-up work per node, {LARGE} nodes x {LOCAL_WORKERS} workers", "s per node (median)",
                median(large), median(small), f"the same at {SMALL} nodes", False, target_ratio=0.5,
                note="topology from Volcano's env + one compile per graph shared by the node's 8 workers")]
    notes = [f"{rounds} alternating rounds; every node of the job in turn, one shared compile cache root; a fake DNS "
             f"and fake 4 KB compiles, so only incv4's own protocol work is timed. Target: no growth beyond noise "
             f"(≤ 2x the {SMALL}-node figure; work growing with the node count would read ~{LARGE // SMALL}x)."]
    return rows, notes, {"small_s": small, "large_s": large}
