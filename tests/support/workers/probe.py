"""A small BatchNorm-free probe worker for the launcher's tests: a 2-layer MLP trained with plain SGD by incv4's own
train step (`build_train_step`), data parallel through MindSpore's real collectives on the CPU when the launcher set
up a cluster (MS_ROLE present).

Every rank builds the same initial weights (fixed NumPy seed) and the same global batch of `--global-batch`
samples, and trains on its own contiguous slice of it; so one step with W workers x batch B must give the weights
of one process (no launcher) with `--global-batch W*B`. SIGTERM sets a flag that the ranks agree on (all-reduced)
after each step; they then write a "checkpoint" file and exit 143, as the trainer does.

Writes <out>/pid_rank<r> once training starts, then final_rank<r>.npz (or checkpoint_rank<r>.npz on SIGTERM).
Run: python probe.py --out DIR [--steps N] [--global-batch G] [--step-sleep S] [--exit-at-step K --exit-code C]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

FEATURES, HIDDEN, CLASSES = 16, 32, 4
_stop_requested = False


def _request_stop(_signum, _frame):
    global _stop_requested
    _stop_requested = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--exit-at-step", type=int, default=-1)
    parser.add_argument("--exit-code", type=int, default=1)
    # Small buckets so the probe's 4 gradients travel in 2 fused all-reduces (w1+b1, w2+b2), as InceptionV4's do.
    parser.add_argument("--bucket-bytes", type=int, default=2200)
    parser.add_argument("--exit-rank", type=int, default=0)
    # The launcher also passes the trainer's flags (--config, --data-dir, --set ...): not the probe's business.
    args, _trainer_flags = parser.parse_known_args(argv)
    signal.signal(signal.SIGTERM, _request_stop)

    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from incv4.trainer.launcher.environment import apply_worker_settings
    from incv4.trainer.training.step import build_train_step

    apply_worker_settings()
    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    distributed = "MS_ROLE" in os.environ
    if distributed:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, world = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    else:
        rank, world = 0, 1
    if args.global_batch % world:
        print(f"error: --global-batch {args.global_batch} is not divisible by {world} workers", flush=True)
        return 2

    init_rng = np.random.RandomState(1234)
    net = nn.SequentialCell(
        nn.Dense(FEATURES, HIDDEN, weight_init=Tensor(init_rng.randn(HIDDEN, FEATURES).astype(np.float32) * 0.3),
                 bias_init="zeros"),
        nn.ReLU(),
        nn.Dense(HIDDEN, CLASSES, weight_init=Tensor(init_rng.randn(CLASSES, HIDDEN).astype(np.float32) * 0.3),
                 bias_init="zeros"))
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    # incv4's own train step (gradient mean across ranks, update when finite), so the probe checks what training runs.
    train_step = build_train_step(net, loss, nn.SGD(net.trainable_params(), learning_rate=args.lr), loss_scale=1.0,
                                  rank_size=world, check_gradients=False, grad_bucket_bytes=args.bucket_bytes)
    update, no_stop = Tensor(True), Tensor(np.float32(0.0))

    def step(images, labels):
        return train_step(images, labels, update, no_stop)[0]
    all_reduce = ops.AllReduce() if distributed else None

    data_rng = np.random.RandomState(99)
    x_all = data_rng.randn(args.global_batch, FEATURES).astype(np.float32)
    y_all = data_rng.randint(0, CLASSES, size=args.global_batch).astype(np.int32)
    per_rank = args.global_batch // world
    x = Tensor(x_all[rank * per_rank:(rank + 1) * per_rank])
    y = Tensor(y_all[rank * per_rank:(rank + 1) * per_rank])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid_rank{rank}"), "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))

    def weights() -> dict:
        return {p.name: p.asnumpy() for p in net.trainable_params()}

    for index in range(args.steps):
        value = step(x, y)
        print(f"step {index} rank {rank} loss {float(value.asnumpy()):.6f}", flush=True)
        if index == args.exit_at_step and rank == args.exit_rank:
            print(f"exiting with {args.exit_code} as asked", flush=True)
            return args.exit_code
        time.sleep(args.step_sleep)
        stop = 1.0 if _stop_requested else 0.0
        if all_reduce is not None:  # every rank stops at the same step, or a peer would hang in the next all-reduce
            stop = float(all_reduce(Tensor(np.array([stop], np.float32))).asnumpy()[0])
        if stop > 0:
            np.savez(os.path.join(args.out, f"checkpoint_rank{rank}.npz"), **weights())
            print(f"SIGTERM: checkpoint saved at step {index}", flush=True)
            return 143
    np.savez(os.path.join(args.out, f"final_rank{rank}.npz"), **weights())
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
