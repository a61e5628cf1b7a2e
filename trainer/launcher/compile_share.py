"""One graph compile per node instead of one per worker.

The workers of a node compile the very same graphs. On a host whose cores are shared by 8 workers the 8 concurrent
compiles are the launch's slowest part, while one process alone loads a compiled graph from MindSpore's compile
cache in a fraction of the time it takes to compile it (bench/FINDINGS.md). So, when the
launcher enables MindSpore's compile cache (MS_COMPILER_CACHE_ENABLE/PATH, one folder per rank, rank_<id>/), each
graph is compiled by the node's first worker (the leader, local rank 0) alone; the other workers wait for it, copy
the leader's cache files into their own rank folder, and then load instead of compiling.

The cache files of two ranks differ only in object ids and node order (a restart of one rank gives the same kind of
difference), and the collectives name the world group, not a rank: a copied cache is what a restart would load.
MindSpore numbers a process's cache files by compile order (MS_WORKERcompile_cache_<n>.mindir); every worker
compiles its graphs in the same order, so the file the leader's n-th compile wrote is graph n of every worker. The
leader names that file in a marker (graph_cache/.incv4-compiled-<n>) once its compile returns.

Only on the CPU, where it was verified (weights bit-identical to a run without the cache). On Ascend the cache also
holds backend state compiled for the rank's own device and communication group, which a copy could get wrong, and
each worker there compiles for its own NPU on a host with many cores; there every worker keeps its own cache.

A follower waits at most `timeout` seconds for the leader (a dead leader makes the launcher stop the node anyway)
and then compiles by itself: sharing can only save time, never stop a run.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Callable, Optional

ENABLE_ENV = "MS_COMPILER_CACHE_ENABLE"
PATH_ENV = "MS_COMPILER_CACHE_PATH"
MARKER = ".incv4-compiled-{index}"
DEFAULT_TIMEOUT = 1800.0


class CompileSharing:
    """Call `before_first_call(cell, *args)` once per compiled cell, just before its first call, on every worker of
    the node in the same order. Inactive (does nothing) without the compile cache, with one worker per node, or
    (from_env) on a device other than the CPU."""

    def __init__(self, cache_root: Optional[str], rank: int, local_rank: int, local_workers: int,
                 timeout: float = DEFAULT_TIMEOUT, log: Callable[[str], None] = lambda _msg: None):
        self.active = bool(cache_root) and local_workers > 1
        self.cache_root = cache_root
        self.rank = rank
        self.leader = rank - local_rank
        self.is_leader = local_rank == 0
        self.timeout = timeout
        self.log = log
        self._index = 0

    @classmethod
    def from_env(cls, rank: int, device: str, log: Callable[[str], None] = lambda _msg: None) -> "CompileSharing":
        enabled = os.environ.get(ENABLE_ENV) == "1" and device == "CPU"
        return cls(os.environ.get(PATH_ENV) if enabled else None, rank,
                   int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1")), log=log)

    def graph_dir(self, rank: int) -> str:
        return os.path.join(self.cache_root, f"rank_{rank}", "graph_cache")

    def before_first_call(self, cell, *args) -> None:
        if not self.active:
            return
        index = self._index
        self._index += 1
        if self.is_leader:
            before = self._cache_files(self.leader)
            cell.compile(*args)  # the call that follows finds the graph compiled
            written = sorted(self._cache_files(self.leader) - before)
            # one new file: graph `index` was compiled and cached; none: it was loaded from an earlier run's cache
            self._mark(index, written[0] if len(written) == 1 else "")
        else:
            name = self._wait_for_leader(index)
            if name:
                self._copy(name)

    def _cache_files(self, rank: int) -> set:
        try:
            return {n for n in os.listdir(self.graph_dir(rank)) if n.endswith(".mindir")}
        except FileNotFoundError:
            return set()

    def _marker(self, index: int) -> str:
        return os.path.join(self.graph_dir(self.leader), MARKER.format(index=index))

    def _mark(self, index: int, file_name: str) -> None:
        """Atomically: followers never read half a marker. A marker left by an earlier run of the same cache key
        names a file of the same graph, so it is as good as a fresh one."""
        os.makedirs(self.graph_dir(self.leader), exist_ok=True)
        partial = f"{self._marker(index)}.part"
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(file_name + "\n")
        os.replace(partial, self._marker(index))

    def _wait_for_leader(self, index: int) -> str:
        """The cache file name of graph `index` once the leader has compiled it ("" when there is none to copy)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                with open(self._marker(index), encoding="utf-8") as fh:
                    return fh.read().strip()
            except FileNotFoundError:
                time.sleep(0.5)
        self.log(f"compile sharing: rank {self.leader} did not compile graph {index} within {self.timeout:.0f} s; "
                 f"rank {self.rank} compiles it by itself")
        return ""

    def _copy(self, file_name: str) -> None:
        """The leader's cache file, and its dependency hash, into this rank's folder, never over a file this rank
        already has (its own cache of the same graph from an earlier run)."""
        source_dir, target_dir = self.graph_dir(self.leader), self.graph_dir(self.rank)
        os.makedirs(target_dir, exist_ok=True)
        for name in os.listdir(source_dir):
            if name == file_name or name.endswith(".hash"):
                target = os.path.join(target_dir, name)
                if not os.path.exists(target):
                    partial = f"{target}.{os.getpid()}.part"
                    shutil.copyfile(os.path.join(source_dir, name), partial)
                    os.replace(partial, target)
