"""Trains a small BatchNorm-free MLP with incv4's compiled train step (`build_train_step`, graph mode) once per
variant of MindCV's extras (plain; dynamic loss scale; gradient accumulation; EMA; all three), on the same global
batches: a lone process trains on the whole batch, each rank under the launcher (MS_ROLE present) on its own
contiguous slice, with MindSpore's real collectives on the CPU, set up as the trainer's world.py does. A variant
named "...+overflow" has an infinite input in rank 1's half of the second batch: the step must be skipped on every
rank (and in the lone process).

Every parameter, biases included, starts from a fixed NumPy seed: nn.Dense's default bias is drawn from
MindSpore's unseeded global RNG, which would start each process somewhere else.

Writes <out>/<variant>_rank<r>.npz: every parameter of the step except the accumulation buffers.
Run: python step_extras_worker.py --out DIR [--variants none,dynamic,...]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

VARIANTS = ("none", "dynamic", "accumulate", "ema", "dynamic+accumulate+ema", "none+overflow",
            "dynamic+accumulate+ema+overflow")
OVERFLOW_STEP = 1
GLOBAL_BATCH, STEPS, FEATURES, HIDDEN, CLASSES = 16, 4, 6, 8, 3
LEARNING_RATES = [0.1, 0.09, 0.08, 0.07]  # a schedule, so a step that reads the wrong lr shows


def _network(ms_nn, tensor):
    rng = np.random.RandomState(7)

    def dense(inputs, outputs):
        return ms_nn.Dense(inputs, outputs, weight_init=tensor(rng.randn(outputs, inputs).astype(np.float32) * 0.3),
                           bias_init=tensor(rng.randn(outputs).astype(np.float32) * 0.1))
    return ms_nn.SequentialCell(dense(FEATURES, HIDDEN), ms_nn.ReLU(), dense(HIDDEN, CLASSES))


def _train(variant: str, rank: int, world: int) -> dict:
    from mindspore import Tensor, nn

    from incv4.trainer.training.step import StepExtras, build_train_step

    net = _network(nn, Tensor)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=LEARNING_RATES, momentum=0.9)
    extras = StepExtras(dynamic_loss_scale="dynamic" in variant,
                        accumulation_steps=2 if "accumulate" in variant else 1,
                        ema_decay=0.99 if "ema" in variant else None)
    # small buckets: the 4 gradients travel in 2 fused all-reduces, as InceptionV4's travel in several
    step = build_train_step(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer, 1024.0,
                            world, check_gradients=False, grad_bucket_bytes=160, extras=extras)
    per_rank = GLOBAL_BATCH // world
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    for index in range(STEPS):
        data = np.random.RandomState(100 + index)
        x = data.randn(GLOBAL_BATCH, FEATURES).astype(np.float32)
        y = data.randint(0, CLASSES, GLOBAL_BATCH).astype(np.int32)
        if "overflow" in variant and index == OVERFLOW_STEP:
            x[GLOBAL_BATCH - 1, 0] = np.inf  # the last rank's slice: NaN loss and gradients there only
        step(Tensor(x[mine]), Tensor(y[mine]), Tensor(True), Tensor(np.float32(0.0)))
    return {p.name: p.asnumpy() for p in step.get_parameters() if not p.name.startswith("accumulated.")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args, _trainer_flags = parser.parse_known_args(argv)  # the launcher adds the trainer's flags

    import mindspore as ms

    from incv4.trainer.launcher.environment import apply_worker_settings

    apply_worker_settings()
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rank, world = 0, 1
    if "MS_ROLE" in os.environ:  # as trainer/training/world.py's set_up_device
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, world = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=world)
    os.makedirs(args.out, exist_ok=True)
    for variant in args.variants.split(","):
        np.savez(os.path.join(args.out, f"{variant}_rank{rank}.npz"), **_train(variant, rank, world))
    return 0


if __name__ == "__main__":
    sys.exit(main())
