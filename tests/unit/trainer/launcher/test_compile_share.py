"""Compile sharing (trainer/compile_share.py): the node's first worker compiles, the others copy its cache file.

Here the "cell" is a stand-in whose compile writes the next MindSpore-named cache file, as MindSpore's compile cache
does, so the file protocol is checked with real processes racing on a real folder; the launch tests
(tests/test_launch.py) run it with MindSpore's real cache under 8 real workers."""
from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from incv4.trainer.launcher.compile_share import CompileSharing


class FakeCell:
    """compile(): like MindSpore with MS_COMPILER_CACHE_ENABLE, writes MS_WORKERcompile_cache_<n>.mindir for the
    process's n-th graph (and the dependency hash) into rank_<rank>/graph_cache, unless the file exists (a load)."""

    def __init__(self, root, rank, counter, content, delay=0.0):
        self.folder = os.path.join(root, f"rank_{rank}", "graph_cache")
        self.counter, self.content, self.delay = counter, content, delay
        self.compiled_with = None

    def compile(self, *args):
        time.sleep(self.delay)
        os.makedirs(self.folder, exist_ok=True)
        index = self.counter[0]
        self.counter[0] += 1
        path = os.path.join(self.folder, f"MS_WORKERcompile_cache_{index}.mindir")
        if not os.path.exists(path):
            with open(path, "w") as fh:
                fh.write(self.content)
            with open(os.path.join(self.folder, "MS_WORKERcompile_dependency.hash"), "w") as fh:
                fh.write("hash")
        self.compiled_with = args


def read(root, rank, index):
    with open(os.path.join(root, f"rank_{rank}", "graph_cache", f"MS_WORKERcompile_cache_{index}.mindir")) as fh:
        return fh.read()


def test_followers_copy_each_graph_the_leader_compiled(tmp_path):
    root = str(tmp_path)
    leader = CompileSharing(root, rank=0, local_rank=0, local_workers=2)
    follower = CompileSharing(root, rank=1, local_rank=1, local_workers=2)
    counter = [0]
    train, evaluate = FakeCell(root, 0, counter, "train graph"), FakeCell(root, 0, counter, "eval graph")
    leader.before_first_call(train, "images", "labels")
    leader.before_first_call(evaluate, "batch")
    assert train.compiled_with == ("images", "labels")
    follower.before_first_call(object())  # followers never compile here: MindSpore loads the copy on the call
    follower.before_first_call(object())
    assert read(root, 1, 0) == "train graph" and read(root, 1, 1) == "eval graph"
    assert os.path.exists(os.path.join(root, "rank_1", "graph_cache", "MS_WORKERcompile_dependency.hash"))


def _follower(root, rank, local_rank, out):
    sharing = CompileSharing(root, rank=rank, local_rank=local_rank, local_workers=4)
    started = time.monotonic()
    sharing.before_first_call(object())
    out.put((rank, time.monotonic() - started, read(root, rank, 0)))


def test_followers_in_other_processes_wait_for_the_leaders_compile(tmp_path):
    """Node 1 of a 2 x 4 job: ranks 5-7 wait for rank 4 (their node's leader), then hold its file."""
    root = str(tmp_path)
    queue = multiprocessing.get_context("spawn").Queue()
    followers = [multiprocessing.get_context("spawn").Process(target=_follower, args=(root, rank, rank - 4, queue))
                 for rank in (5, 6, 7)]
    for process in followers:
        process.start()
    time.sleep(1.0)
    assert not os.path.exists(os.path.join(root, "rank_5")), "a follower went on before the leader compiled"
    CompileSharing(root, rank=4, local_rank=0, local_workers=4).before_first_call(FakeCell(root, 4, [0], "graph"))
    results = sorted(queue.get(timeout=30) for _ in followers)
    for process in followers:
        process.join(timeout=10)
    assert [(rank, content) for rank, _, content in results] == [(5, "graph"), (6, "graph"), (7, "graph")]
    assert all(waited >= 0.5 for _, waited, _ in results)


def test_a_follower_keeps_its_own_cache_from_an_earlier_run(tmp_path):
    root = str(tmp_path)
    FakeCell(root, 1, [0], "rank 1's own graph").compile()
    CompileSharing(root, 0, 0, 2).before_first_call(FakeCell(root, 0, [0], "leader's graph"))
    CompileSharing(root, 1, 1, 2).before_first_call(object())
    assert read(root, 1, 0) == "rank 1's own graph"


def test_a_leader_that_loads_its_cache_tells_followers_there_is_nothing_new(tmp_path):
    """Restart: the leader's compile writes no new file (it loaded its own cache); followers use theirs."""
    root = str(tmp_path)
    FakeCell(root, 0, [0], "graph").compile()
    CompileSharing(root, 0, 0, 2).before_first_call(FakeCell(root, 0, [0], "graph"))
    CompileSharing(root, 1, 1, 2).before_first_call(object())
    assert not os.path.exists(os.path.join(root, "rank_1", "graph_cache", "MS_WORKERcompile_cache_0.mindir"))


def test_a_follower_whose_leader_never_compiles_gives_up_and_says_so(tmp_path):
    said = []
    sharing = CompileSharing(str(tmp_path), rank=3, local_rank=1, local_workers=2, timeout=1.0, log=said.append)
    sharing.before_first_call(object())
    assert said == ["compile sharing: rank 2 did not compile graph 0 within 1 s; rank 3 compiles it by itself"]


@pytest.mark.parametrize("cache_root, local_workers", [(None, 8), ("/somewhere", 1)])
def test_inactive_without_a_cache_or_with_one_worker_per_node(cache_root, local_workers):
    cell = FakeCell("/nonexistent", 0, [0], "")
    sharing = CompileSharing(cache_root, rank=0, local_rank=0, local_workers=local_workers)
    sharing.before_first_call(cell)
    assert not sharing.active and cell.compiled_with is None


def test_from_env_reads_what_the_launcher_exports(monkeypatch, tmp_path):
    monkeypatch.setenv("MS_COMPILER_CACHE_ENABLE", "1")
    monkeypatch.setenv("MS_COMPILER_CACHE_PATH", str(tmp_path))
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    sharing = CompileSharing.from_env(rank=11, device="CPU")
    assert sharing.active and sharing.leader == 8 and not sharing.is_leader
    assert not CompileSharing.from_env(rank=11, device="Ascend").active  # verified on the CPU only
    monkeypatch.setenv("MS_COMPILER_CACHE_ENABLE", "0")
    assert not CompileSharing.from_env(rank=11, device="CPU").active
