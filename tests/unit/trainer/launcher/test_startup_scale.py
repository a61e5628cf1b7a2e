"""Start-up of a 128-node job, simulated with fake hosts: the work each node's launcher and workers do to find their
place (trainer/launcher/topology.py) and to share one graph compile (trainer/launcher/compile_share.py) does not
grow with the node count. Work is counted (resolver calls, environment reads, file-system calls, bytes copied),
never timed.

The environment is what Volcano's plugins give every pod of a job with N pods of task `worker`
(volcano-sh/volcano pkg/controllers/job/plugins/env/env.go: VC_TASK_INDEX/VK_TASK_INDEX;
pkg/controllers/job/plugins/svc/svc.go: VC_WORKER_HOSTS, VC_WORKER_NUM). The compile cache root is the one
`compile_cache_dir` puts under the checkpoint folder, which on a cluster is one volume every node shares, so all
ranks' folders sit side by side in it."""
from __future__ import annotations

import os
import shutil
from collections import Counter, UserDict

import pytest

from incv4.trainer.launcher import topology
from incv4.trainer.launcher.compile_share import CompileSharing

NODE_COUNTS = (2, 16, 128)
LOCAL_WORKERS = 8
GRAPHS = ("train step", "evaluation")


def volcano_env(job: str, nodes: int, index: int) -> dict:
    hosts = ",".join(f"{job}-worker-{i}.{job}" for i in range(nodes))
    return {"VC_TASK_INDEX": str(index), "VK_TASK_INDEX": str(index), "VC_WORKER_HOSTS": hosts,
            "VC_WORKER_NUM": str(nodes), "HOSTNAME": f"{job}-worker-{index}", "PATH": "/usr/bin"}


class CountingEnv(UserDict):
    """A pod's environment that counts which variables the launcher reads."""

    def __init__(self, data):
        super().__init__(data)
        self.reads = Counter()

    def __getitem__(self, key):
        self.reads[key] += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.reads[key] += 1
        return self.data.get(key, default)


def resolve_every_node(nodes: int, tmp_path):
    """Each node's topology from its own environment, with a fake DNS; per node: (resolver calls, variables read,
    bytes of the variables read)."""
    work = []
    for index in range(nodes):
        env, lookups = CountingEnv(volcano_env("run", nodes, index)), []

        def resolver(host):
            lookups.append(host)
            return "10.0.0.1"

        topo = topology.from_environment(env, hosts_dir=str(tmp_path / "no-hosts-file"), resolver=resolver)
        assert (topo.node_rank, topo.nodes, topo.world_size) == (index, nodes, nodes * LOCAL_WORKERS)
        assert lookups == ["run-worker-0.run"]  # the scheduler's name only, never the peers'
        read_bytes = sum(len(env.data[k]) for k in env.reads if k in env.data)
        work.append((len(lookups), sum(env.reads.values()), read_bytes))
    return work


def test_topology_work_per_node_does_not_grow_with_the_node_count(tmp_path):
    per_count = {n: resolve_every_node(n, tmp_path) for n in NODE_COUNTS}
    for n, work in per_count.items():
        assert len(set((calls, reads) for calls, reads, _ in work)) == 1, n  # every node does the same
    lookups_and_reads = {n: work[0][:2] for n, work in per_count.items()}
    assert lookups_and_reads[2] == lookups_and_reads[128] == (1, lookups_and_reads[2][1])
    # What does grow: the host list Volcano hands every pod is parsed once, ~15 bytes per node at this job name.
    # At 128 nodes that is 2 KB of text, read once per node start: not worth a protocol change.
    assert per_count[128][0][2] < 128 * 40


class FakeCell:
    """compile(): what MindSpore's compile cache does on a first compile: writes the process's next
    MS_WORKERcompile_cache_<n>.mindir and the dependency hash into rank_<rank>/graph_cache."""

    def __init__(self, root, rank, counter, size=4096):
        self.folder = os.path.join(root, f"rank_{rank}", "graph_cache")
        self.counter, self.size = counter, size

    def compile(self, *args):
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, f"MS_WORKERcompile_cache_{self.counter[0]}.mindir")
        self.counter[0] += 1
        with open(path, "wb") as fh:
            fh.write(b"g" * self.size)
        with open(os.path.join(self.folder, "MS_WORKERcompile_dependency.hash"), "w") as fh:
            fh.write("hash")


class FileSystemCounter:
    """Counts the file-system calls compile sharing makes (listdir, open, copyfile and the bytes it copies, the
    entries each listdir returns), attributed to the node currently running."""

    def __init__(self, monkeypatch):
        self.node = None
        self.per_node = {}
        real_listdir, real_copy, real_open = os.listdir, shutil.copyfile, open
        module = "incv4.trainer.launcher.compile_share"

        def listdir(path):
            entries = real_listdir(path)
            self._add("listdir", 1)
            self._add("entries listed", len(entries))
            return entries

        def copyfile(src, dst):
            self._add("copyfile", 1)
            self._add("bytes copied", os.path.getsize(src))
            return real_copy(src, dst)

        def opened(path, *args, **kwargs):
            self._add("open", 1)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(f"{module}.os.listdir", listdir)
        monkeypatch.setattr(f"{module}.shutil.copyfile", copyfile)
        monkeypatch.setattr(f"{module}.open", opened, raising=False)

    def _add(self, what, amount):
        self.per_node.setdefault(self.node, Counter())[what] += amount


def share_compiles_on_every_node(nodes: int, root, counter: FileSystemCounter) -> dict:
    """Each node: its leader compiles every graph, then its 7 followers take the leader's files, all ranks of the
    job in one shared cache root."""
    for node in range(nodes):
        counter.node = (nodes, node)
        first = node * LOCAL_WORKERS
        leader = CompileSharing(str(root), rank=first, local_rank=0, local_workers=LOCAL_WORKERS, timeout=5)
        compiled = [0]
        for _ in GRAPHS:
            leader.before_first_call(FakeCell(str(root), first, compiled))
        for local_rank in range(1, LOCAL_WORKERS):
            follower = CompileSharing(str(root), rank=first + local_rank, local_rank=local_rank,
                                      local_workers=LOCAL_WORKERS, timeout=5)
            for _ in GRAPHS:
                follower.before_first_call(object())
    return {node: counter.per_node[(nodes, node)] for node in range(nodes)}


@pytest.mark.parametrize("nodes", [NODE_COUNTS[-1]])
def test_compile_sharing_work_per_node_does_not_grow_with_the_node_count(tmp_path, monkeypatch, nodes):
    counter = FileSystemCounter(monkeypatch)
    small = share_compiles_on_every_node(NODE_COUNTS[0], tmp_path / "small", counter)
    large = share_compiles_on_every_node(nodes, tmp_path / "large", counter)
    assert len({tuple(sorted(work.items())) for work in large.values()}) == 1, "nodes of one job differ"
    assert large[nodes - 1] == small[0]
    work = large[nodes - 1]
    followers = LOCAL_WORKERS - 1
    # each follower copies each graph once and the dependency hash once: nothing proportional to the job's size
    assert work["copyfile"] == followers * (len(GRAPHS) + 1)
    assert work["bytes copied"] == followers * (len(GRAPHS) * 4096 + len("hash"))
    # listings see only the node's own leader folder (its graphs, hash and markers), never the other nodes' ranks
    assert work["entries listed"] <= work["listdir"] * (2 * len(GRAPHS) + 1)
    assert len(os.listdir(tmp_path / "large")) == nodes * LOCAL_WORKERS  # every rank's folder is in the root
