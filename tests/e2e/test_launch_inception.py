"""Two simulated nodes x 2 workers (two `incv4 launch` processes on loopback, each given the
environment Volcano's env and svc plugins would give its pod) train InceptionV4 at 75px for a few steps with
MindSpore's real collectives on the CPU; every rank finishes and all 4 hold identical parameters afterwards.
Each node compiles the train step once (its first worker) and its other workers load that compile (compile_share).

The workers run the real trainer through tests/support/workers/train_and_dump.py, which only adds a dump of each
rank's final parameters (the trainer checkpoints from rank 0 alone). 4 InceptionV4 processes, each large and slow to
compile on a small machine, hence e2e (2 workers per node, not 8: 8 processes on this 2-core machine took 3.5 min
of the suite's 30 and test nothing 2 do not: a leader and a follower per node, a ring across nodes); run it alone:
`flock /tmp/incv4-heavy.lock pytest tests/e2e/test_launch_inception.py`.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from incv4.trainer import contract
from incv4.trainer.launcher.plan import free_port

WORKER = str(pathlib.Path(__file__).resolve().parents[1] / "support" / "workers" / "train_and_dump.py")
NODES, LOCAL_WORKERS, BATCH, STEPS = 2, 2, 2, 3


@pytest.mark.e2e
def test_two_nodes_of_two_workers_train_inceptionv4_to_identical_parameters(tmp_path, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    world = NODES * LOCAL_WORKERS
    # Exactly STEPS steps of one epoch: world x batch x STEPS training images over 10 classes.
    write_demo_dataset(str(tmp_path / "data"), num_classes=10, train_per_class=world * BATCH * STEPS // 10 + 1,
                       val_per_class=1, image_size=80)
    dump = tmp_path / "params"
    port = free_port()
    launchers = []
    for node in range(NODES):
        env = dict(os.environ, VC_TASK_INDEX=str(node), VK_TASK_INDEX=str(node), VC_WORKER_NUM=str(NODES),
                   VC_WORKER_HOSTS="127.0.0.1,localhost", INCV4_DUMP_DIR=str(dump))
        cmd = [sys.executable, "-m", "incv4.trainer.launcher.launch",
               "--config", str(repo_root / "configs" / "inception_v4_cpu_demo.yaml"),
               "--data-dir", str(tmp_path / "data"), "--set", f"batch_size={BATCH}", "--set", "image_resize=75",
               "--set", "epoch_size=1", "--set", "val_while_train=False", "--set", "num_parallel_workers=1",
               "--set", f"ckpt_save_dir={tmp_path / 'ckpt'}", "--local-workers", str(LOCAL_WORKERS),
               "--master-port", str(port), "--metrics-port", "0", "--cluster-timeout", "600",
               "--log-dir", str(tmp_path / f"logs-node{node}"), "--worker-script", WORKER, "--", "--no-resume"]
        launchers.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for proc in launchers:
            out, err = proc.communicate(timeout=1500)  # hang guard only
            results.append((proc.returncode, out, err))
    finally:
        for proc in launchers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for node, (code, out, err) in enumerate(results):
        assert code == contract.OK, f"node {node}:\n{out[-2000:]}\n{err[-3000:]}"
    assert f"world size {world}" in results[1][2] and "node 1/2" in results[1][2]
    assert f"global batch {world * BATCH}" in results[0][2]
    assert f"training finished: {STEPS} steps" in results[0][1]  # rank 0's progress, echoed by node 0's launcher

    params = [np.load(dump / f"params_rank{rank}.npz") for rank in range(world)]
    names = params[0].files
    assert len(names) > 100  # InceptionV4's trainable parameters, not a stand-in
    for rank in range(1, world):
        assert params[rank].files == names
        for name in names:
            # Same weights, same averaged gradients: equal up to the summation order of the all-reduce.
            np.testing.assert_allclose(params[rank][name], params[0][name], rtol=1e-5, atol=1e-7,
                                       err_msg=f"rank {rank} {name}")

    # Compile sharing: each node's first worker compiled the train step; the others hold a byte copy of its cache
    # file (a rank's own compile writes different bytes: object ids, node order), and trained to the same weights.
    [cache] = (tmp_path / "ckpt" / "compile_cache").iterdir()
    for rank in range(world):
        leader = rank - rank % LOCAL_WORKERS
        mine = (cache / f"rank_{rank}" / "graph_cache" / "MS_WORKERcompile_cache_0.mindir").read_bytes()
        theirs = (cache / f"rank_{leader}" / "graph_cache" / "MS_WORKERcompile_cache_0.mindir").read_bytes()
        assert mine == theirs, f"rank {rank} compiled its own graph instead of loading rank {leader}'s"
        if rank != leader:  # MindSpore's own word that it loaded the graph instead of compiling it
            worker_log = (tmp_path / f"logs-node{rank // LOCAL_WORKERS}" / f"worker_{rank}.log").read_text()
            assert "Use the compilation cache" in worker_log, f"rank {rank} did not load the shared compile"
    assert (cache / "rank_0" / "graph_cache" / "MS_WORKERcompile_cache_0.mindir").read_bytes() != \
        (cache / f"rank_{LOCAL_WORKERS}" / "graph_cache" / "MS_WORKERcompile_cache_0.mindir").read_bytes()
