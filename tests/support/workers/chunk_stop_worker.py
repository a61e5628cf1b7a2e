"""Two ranks under `incv4 launch` run incv4's chunked step (chunked_step.py, feeds.StepwiseFeed) over the chunk
plan of chunks.next_chunk_steps, with MindSpore's real collectives on the CPU; rank 1 alone gets a stop request
(as from SIGTERM) just before its step STOP_BEFORE_STEP. Each rank writes the chunks it ran and where it stopped to
<out>/rank<r>.json, so the test can check that both stopped after the same step.

The network is step_extras_worker's BatchNorm-free MLP.
Run: python -m incv4.trainer.launcher.launch --worker-script chunk_stop_worker.py ... -- --out DIR"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from step_extras_worker import CLASSES, FEATURES, GLOBAL_BATCH, _network  # noqa: E402

STEPS_PER_EPOCH, LOG_INTERVAL, STOP_BEFORE_STEP = 12, 4, 6


def _batches(rank: int, world: int, stop):
    from mindspore import Tensor

    per_rank = GLOBAL_BATCH // world
    for index in range(STEPS_PER_EPOCH):
        if rank == 1 and index + 1 == STOP_BEFORE_STEP:
            stop.requested = True
        data = np.random.RandomState(100 + index)
        x = data.randn(GLOBAL_BATCH, FEATURES).astype(np.float32)[rank * per_rank:(rank + 1) * per_rank]
        y = data.randint(0, CLASSES, GLOBAL_BATCH).astype(np.int32)[rank * per_rank:(rank + 1) * per_rank]
        yield Tensor(x), Tensor(y)


def _train(rank: int, world: int) -> dict:
    from mindspore import Tensor, nn

    from incv4.trainer.training.chunked_step import build_chunked_step
    from incv4.trainer.training.chunks import next_chunk_steps
    from incv4.trainer.training.feeds import StepwiseFeed
    from incv4.trainer.training.step import build_train_step
    from incv4.trainer.training.stop import StopRequest

    net = _network(nn, Tensor)
    step = build_train_step(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                            nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9), 1.0, world,
                            check_gradients=False)
    stop = StopRequest()
    feed = StepwiseFeed(build_chunked_step(step), stop, lambda *args: None)
    feed.begin_epoch(lambda epoch, skip: _batches(rank, world, stop), 0, 0)
    done, chunks = 0, []
    while done < STEPS_PER_EPOCH:
        tally = feed.run(next_chunk_steps(done, STEPS_PER_EPOCH, LOG_INTERVAL, first=not chunks), 0)
        done += tally.steps
        chunks.append([done, tally.stop_any])
        if stop.agreed(tally.stop_any, world):
            break
    return {"chunks": chunks, "stopped_at": done, "requested": stop.requested}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args, _trainer_flags = parser.parse_known_args(argv)  # the launcher adds the trainer's flags

    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    from incv4.trainer.launcher.environment import apply_worker_settings

    apply_worker_settings()
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    init()  # as trainer/training/world.py's set_up_device
    rank, world = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"rank{rank}.json"), "w", encoding="utf-8") as fh:
        json.dump(_train(rank, world), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
