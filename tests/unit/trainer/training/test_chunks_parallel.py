"""Chunks under data parallel, with MindSpore's real collectives on the CPU: two ranks under `incv4 launch` run the
chunked step over the same chunk plan; a stop request on rank 1 alone, in the middle of a chunk, stops both ranks
after the same step, the end of that chunk (the worker: tests/support/workers/chunk_stop_worker.py).
Run it alone (several MindSpore processes): `flock /tmp/incv4-heavy.lock pytest <this file>`."""
from __future__ import annotations

import json
import pathlib

import pytest

from incv4.trainer import contract
from local_launch import launch_worker  # noqa: E402

pytest.importorskip("mindspore")
WORKER = pathlib.Path(__file__).resolve().parents[3] / "support" / "workers" / "chunk_stop_worker.py"


def test_a_stop_request_on_one_rank_stops_every_rank_at_the_end_of_the_same_chunk(tmp_path):
    job = launch_worker(WORKER, tmp_path, ["--out", str(tmp_path / "out")])
    assert job.returncode == contract.OK, job.stderr[-3000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # chunks 1 | 2-4 | 5-8: rank 1's request before step 6 rides on steps 6-8 to both ranks; the chunk ends at 8
    for rank in ranks:
        assert rank["chunks"] == [[1, False], [4, False], [8, True]] and rank["stopped_at"] == 8
    assert [rank["requested"] for rank in ranks] == [False, True]
