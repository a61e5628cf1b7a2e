"""Case `loop`: the trainer's loop overhead against a bare loop over the compiled train step, on a tiny network
where host overhead shows (issue 20's acceptance; target: the loop costs <= 2% over the bare loop), and the host
synchronisations per 100 steps before and after steps in chunks (trainer/training/chunks.py).

One process, graph mode on the CPU, a 3-layer MLP (batch 32), the same pre-made batches for every side:
- bare: `step(x, y, update, stop)` in a Python for loop, nothing read until the end (the reference);
- per-step reads: the bare loop reading loss, finite and stop after every step, as the loop did before chunks;
- bare chunked: the compiled ChunkedStep (the train step + its on-device tally) called the same way;
- trainer: `loop.run_epochs` with its real feed, progress reporting, divergence guard and metrics, log_interval
  100 (the published recipe's), the chunked step compiled beforehand so no side times a compile.
Sides alternate over several rounds; each side's median seconds per step is reported. Host synchronisations are
counted as `Tensor.asnumpy` calls. Run alone: `python -m bench.case_loop --worker`."""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

from bench.common import CACHE_DIR, emit, incv4_python, median, run_json, worker_main
from bench.results import Row

STEPS, ROUNDS, BATCH, FEATURES, CLASSES = 400, 5, 32, 64, 10


def _setup():
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from incv4.trainer.training.chunked_step import build_chunked_step
    from incv4.trainer.training.step import build_train_step

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)
    net = nn.SequentialCell(nn.Dense(FEATURES, 128), nn.ReLU(), nn.Dense(128, 128), nn.ReLU(),
                            nn.Dense(128, CLASSES))
    step = build_train_step(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                            nn.Momentum(net.trainable_params(), 0.01, 0.9), 1.0, 1, check_gradients=False)
    rng = np.random.default_rng(0)
    batches = [(ms.Tensor(rng.normal(size=(BATCH, FEATURES)).astype(np.float32)),
                ms.Tensor(rng.integers(0, CLASSES, BATCH).astype(np.int32))) for _ in range(STEPS)]
    chunked = build_chunked_step(step)
    return step, chunked, batches


def _bare(step, batches, read_each_step: bool) -> float:
    import mindspore as ms
    import numpy as np

    update, stop = ms.Tensor(True), ms.Tensor(np.float32(0.0))
    t = time.perf_counter()
    for images, labels in batches:
        out = step(images, labels, update, stop)
        if read_each_step:
            float(out[0].asnumpy()), bool(out[1].asnumpy()), float(out[2].asnumpy())
    float(out[0].asnumpy())
    return (time.perf_counter() - t) / len(batches)


def _bare_chunked(chunked, batches) -> float:
    t = time.perf_counter()
    chunked.start_chunk(0)
    for images, labels in batches:
        chunked(images, labels)
    chunked.read(len(batches))
    return (time.perf_counter() - t) / len(batches)


def _trainer(chunked, batches) -> float:
    from incv4.trainer.checkpoint.store import Position
    from incv4.trainer.metrics.exporter import TrainerMetrics
    from incv4.trainer.training import feeds, loop
    from incv4.trainer.training.stop import StopRequest

    recipe = SimpleNamespace(name="bench", epoch_size=1, max_nonfinite_steps=10, mode=0, batch_size=BATCH,
                             log_interval=100, val_while_train=False, val_interval=1, bn_recalibrate_steps=0,
                             ckpt_save_interval=1)
    metric = TrainerMetrics(0, {"model": "mlp", "mindspore_version": "-", "world_size": "1",
                                "batch_size": str(BATCH), "recipe": "bench"})
    run = SimpleNamespace(recipe=recipe, rank=1, rank_size=1, device="CPU", amp_level="O0", network=None,
                          train_step=chunked.train_step, lr_schedule=[0.01] * len(batches),
                          steps_per_epoch=len(batches), total_steps=len(batches), position=Position(),
                          say=lambda line: None, metric=metric, epoch_batches=lambda epoch, skip=0: batches[skip:],
                          evaluate=None, sharing=SimpleNamespace(before_first_call=lambda *args: None))
    feed = feeds.StepwiseFeed(chunked, StopRequest(), run.sharing.before_first_call)
    feed.compiled = True
    real_feed_for = loop.feed_for
    loop.feed_for = lambda run_, stop_: feed
    try:
        t = time.perf_counter()
        code = loop.run_epochs(run, StopRequest())
        seconds = (time.perf_counter() - t) / len(batches)
    finally:
        loop.feed_for = real_feed_for
    assert code == 0 and run.position.global_step == len(batches), (code, run.position)
    return seconds


def _count_reads(function) -> int:
    import mindspore as ms

    reads, real = [], ms.Tensor.asnumpy

    def counted(self):
        reads.append(1)
        return real(self)

    ms.Tensor.asnumpy = counted
    try:
        function()
    finally:
        ms.Tensor.asnumpy = real
    return len(reads)


@worker_main
def worker(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    rounds = parser.parse_args(argv).worker and ROUNDS
    step, chunked, batches = _setup()
    _bare(step, batches[:5], True), _bare_chunked(chunked, batches[:5])  # compile both graphs
    sides = {"bare": [], "per_step_reads": [], "bare_chunked": [], "trainer": []}
    for _ in range(rounds):  # alternating
        sides["bare"].append(_bare(step, batches, False))
        sides["per_step_reads"].append(_bare(step, batches, True))
        sides["bare_chunked"].append(_bare_chunked(chunked, batches))
        sides["trainer"].append(_trainer(chunked, batches))
    reads_before = _count_reads(lambda: _bare(step, batches, True)) - 1  # the final read is the bench's
    reads_after = _count_reads(lambda: _trainer(chunked, batches))
    emit(steps=len(batches), rounds=rounds, reads_per_100_before=reads_before * 100 / len(batches),
         reads_per_100_after=reads_after * 100 / len(batches), **{k: median(v) for k, v in sides.items()},
         samples=sides)


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    record = run_json(incv4_python(), "bench.case_loop", ["--worker"], CACHE_DIR / "logs" / "loop.log")
    bare, trainer, chunked, before = (record["bare"], record["trainer"], record["bare_chunked"],
                                      record["per_step_reads"])
    log(f"  [loop] s/step: bare {bare * 1e3:.3f} ms, bare chunked {chunked * 1e3:.3f} ms, trainer "
        f"{trainer * 1e3:.3f} ms, per-step reads {before * 1e3:.3f} ms; host reads per 100 steps "
        f"{record['reads_per_100_before']:.0f} -> {record['reads_per_100_after']:.0f}")
    name = f"training loop, MLP b{BATCH} (graph, CPU), log_interval 100"
    rows = [Row(name, "s per step, trainer loop", trainer, bare, "bare loop over the compiled train step", False,
                target_ratio=1 / 1.02,
                note=f"the trainer's loop = the chunked step (its on-device tally: bare chunked {chunked * 1e3:.3f} "
                     f"ms/step) + feed, progress, guard, metrics"),
            Row(name, "s per step, bare chunked step", chunked, bare, "bare loop over the compiled train step",
                False, note="the tally's share of the trainer's overhead"),
            Row(name, "host reads (asnumpy) per 100 steps", record["reads_per_100_after"],
                record["reads_per_100_before"], "loss, finite and stop read after every step (the loop before "
                "chunks)", False,
                note=f"the per-step reads cost {before * 1e3:.3f} ms/step against the bare {bare * 1e3:.3f}")]
    notes = [f"{record['rounds']} alternating rounds of {record['steps']} steps; medians of s/step"]
    return rows, notes, record


if __name__ == "__main__":
    raise SystemExit(worker())
