"""Case `loop`: the trainer's loop overhead against a bare loop over the compiled train step, on a tiny network
where host overhead shows (issue 20's acceptance; target: the loop costs <= 2% over the bare loop), and the host
synchronisations per 100 steps before and after steps in chunks (trainer/training/chunks.py).

One process, graph mode on the CPU, a 3-layer MLP (batch 32), the same pre-made batches for every side:
- bare: `step(x, y, update, stop)` in a Python for loop, nothing read until the end (the reference);
- per-step reads: the bare loop reading loss, finite and stop after every step, as the loop did before chunks;
- trainer: `loop.run_epochs` with its real feed (the compiled ChunkedStep), chunk reads, progress reporting,
  divergence guard and metrics, log_interval 100 (the published recipe's), compiled beforehand so no side times a
  compile.
What is timed on each side is the wall time and, within it, the time inside the compiled step's calls (a graph call
returns when the step has run on the CPU); the rest is the loop's own overhead. On this shared 2-core VM the step
itself varies by up to 2x from one round to the next, far more than the 2% to be resolved, so the loop's cost per
step is compared as the bare step's median call time plus each side's median overhead: the step's noise cancels,
the loops' own work does not. Host reads are counted as `Tensor.asnumpy` calls, and host waits as the reads with a
step launched since the read before (the others read finished steps). Run alone:
`python -m bench.case_loop --worker`."""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

from bench.common import CACHE_DIR, emit, incv4_python, median, run_json, worker_main
from bench.results import Row

STEPS, ROUNDS, BATCH, FEATURES, CLASSES = 400, 15, 32, 64, 10


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


class CallClock:
    """Wraps a compiled cell: the seconds spent inside its calls."""

    def __init__(self, cell):
        self.cell, self.seconds = cell, 0.0
        self.request_stop = getattr(cell, "request_stop", None)

    def __call__(self, *args):
        t = time.perf_counter()
        out = self.cell(*args)
        self.seconds += time.perf_counter() - t
        return out


def _bare(step, batches, read_each_step: bool) -> tuple[float, float]:
    """(wall, inside the step's calls), seconds per step."""
    import mindspore as ms
    import numpy as np

    update, stop, clock = ms.Tensor(True), ms.Tensor(np.float32(0.0)), CallClock(step)
    t = time.perf_counter()
    for images, labels in batches:
        out = clock(images, labels, update, stop)
        if read_each_step:
            float(out[0].asnumpy()), bool(out[1].asnumpy()), float(out[2].asnumpy())
    float(out[0].asnumpy())
    return (time.perf_counter() - t) / len(batches), clock.seconds / len(batches)


def _trainer(chunked, batches) -> tuple[float, float]:
    """(wall, inside the chunked step's calls), seconds per step."""
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
    clock = CallClock(chunked)
    feed = feeds.StepwiseFeed(clock, StopRequest(), run.sharing.before_first_call)
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
    return seconds, clock.seconds / len(batches)


def _count_reads(function) -> tuple[int, int]:
    """(host reads, host waits) while `function` runs: a read is a `Tensor.asnumpy` call; a wait is a read with a
    step launched since the read before it (the host waits for the device; reads of finished steps do not)."""
    import mindspore as ms

    reads, waits, launched = [], [], [False]
    real_read, real_call = ms.Tensor.asnumpy, ms.nn.Cell.__call__

    def counted_read(self):
        reads.append(1)
        if launched[0]:
            waits.append(1)
            launched[0] = False
        return real_read(self)

    def counted_call(self, *args, **kwargs):
        launched[0] = True
        return real_call(self, *args, **kwargs)

    ms.Tensor.asnumpy, ms.nn.Cell.__call__ = counted_read, counted_call
    try:
        function()
    finally:
        ms.Tensor.asnumpy, ms.nn.Cell.__call__ = real_read, real_call
    return len(reads), len(waits)


@worker_main
def worker(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    rounds = parser.parse_args(argv).worker and ROUNDS
    step, chunked, batches = _setup()
    _bare(step, batches[:5], True), _trainer(chunked, batches[:5])  # compile both graphs
    sides = {"bare": [], "per_step_reads": [], "trainer": []}
    for _ in range(rounds):  # alternating
        sides["bare"].append(_bare(step, batches, False))
        sides["per_step_reads"].append(_bare(step, batches, True))
        sides["trainer"].append(_trainer(chunked, batches))
    reads_before, waits_before = _count_reads(lambda: _bare(step, batches, True))
    reads_after, waits_after = _count_reads(lambda: _trainer(chunked, batches))
    per_100 = 100 / len(batches)
    emit(steps=len(batches), rounds=rounds, reads_per_100_before=(reads_before - 1) * per_100,  # -1: the final read
         reads_per_100_after=reads_after * per_100, waits_per_100_before=waits_before * per_100,
         waits_per_100_after=waits_after * per_100, samples=sides,
         **{f"{side}_{part}": median([s[i] for s in samples]) for side, samples in sides.items()
            for i, part in ((0, "wall"), (1, "step"))},
         **{f"{side}_overhead": median([s[0] - s[1] for s in samples]) for side, samples in sides.items()},
         step_paired_ratio=median([t[1] / b[1] for b, t in zip(sides["bare"], sides["trainer"])]))


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    record = run_json(incv4_python(), "bench.case_loop", ["--worker"], CACHE_DIR / "logs" / "loop.log")
    step = record["bare_step"]
    bare, trainer, before = (step + record[f"{side}_overhead"] for side in ("bare", "trainer", "per_step_reads"))
    log(f"  [loop] ms/step: bare step {step * 1e3:.3f} (chunked {record['trainer_step'] * 1e3:.3f}); overhead "
        f"bare {record['bare_overhead'] * 1e3:.3f}, trainer {record['trainer_overhead'] * 1e3:.3f}, per-step reads "
        f"{record['per_step_reads_overhead'] * 1e3:.3f}; wall bare {record['bare_wall'] * 1e3:.3f}, trainer "
        f"{record['trainer_wall'] * 1e3:.3f}; per 100 steps, host waits {record['waits_per_100_before']:.2f} -> "
        f"{record['waits_per_100_after']:.2f}, reads {record['reads_per_100_before']:.0f} -> "
        f"{record['reads_per_100_after']:.0f}")
    name = f"training loop, MLP b{BATCH} (graph, CPU), log_interval 100"
    rows = [Row(name, "s per step, trainer loop (bare step + loop overhead)", trainer, bare,
                "bare loop over the compiled train step", False, target_ratio=1 / 1.02,
                note=f"overhead outside the step's calls: trainer {record['trainer_overhead'] * 1e6:.1f} us/step "
                     f"(feed, chunk reads, progress, guard, metrics), bare {record['bare_overhead'] * 1e6:.1f}"),
            Row(name, "s per step inside the compiled step's calls", record["trainer_step"], step,
                "the train step called bare", False,
                note=f"the chunked step against the bare one, the same graph: median of the rounds' paired ratios "
                     f"{record['step_paired_ratio']:.3f} (the medians differ by the machine's noise)"),
            Row(name, "host waits for the device per 100 steps", record["waits_per_100_after"],
                record["waits_per_100_before"], "loss, finite and stop read after every step (the loop before "
                "chunks)", False,
                note=f"a wait = a read with a step launched since the read before; the per-step reads cost "
                     f"{before * 1e3:.3f} ms/step against the bare {bare * 1e3:.3f}"),
            Row(name, "host reads (asnumpy) per 100 steps", record["reads_per_100_after"],
                record["reads_per_100_before"], "the same", False,
                note="after chunks: the last loss and stop flag and every step's finite flag, read at the chunk's "
                     "end, of finished steps but the first")]
    notes = [f"{record['rounds']} alternating rounds of {record['steps']} steps; medians per side"]
    return rows, notes, record


if __name__ == "__main__":
    raise SystemExit(worker())
