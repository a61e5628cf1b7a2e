"""Metrics overhead: the step time of incv4's real train step with the trainer's per-step metrics on vs off,
alternating step by step in one process, plus the direct cost of those calls.

    python bench/metrics_overhead.py [--quick] [--size 75] [--batch 8] [--rounds 15]

- The multiprocess directory is set before prometheus_client is imported, as under the launcher, so "on" pays the
  real mmap writes; a /metrics endpoint is served and scraped once at the end to prove the samples are there.
- One InceptionV4 train step as the trainer builds it (graph mode, CPU), one fixed batch. After compile and
  warm-up, steps alternate; "on" adds exactly what the trainer calls per step (`steps_done` with its arguments), in
  rounds off, on, on, off; the median of the rounds' on/off ratios minus 1 is the overhead.
- The same calls are also timed alone (many iterations) and divided by the measured CPU step and by MindCV's
  published Ascend step (ASCEND_STEP_SECONDS): the figure that matters on an NPU, where the step is much shorter.
Prints a human summary, then one JSON line (bench/case_metrics.py reads `overhead_ratio`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

ASCEND_STEP_SECONDS = 0.08097  # MindCV's published InceptionV4 step time on 8 x Ascend 910* (the seed README)


def _build_step(size: int, batch: int):
    import mindspore as ms
    import numpy as np

    from incv4.trainer import cpu_backend
    from incv4.trainer import recipe
    from incv4.trainer.model import inception_v4, optim
    from incv4.trainer.training.step import build_train_step

    cpu_backend.prepare("CPU", print)  # as the trainer, before the first kernel
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    r = recipe.load(recipe.shipped_path("inception_v4_cpu_demo.yaml"),
                    [f"image_resize={size}", f"batch_size={batch}", "num_classes=1000"])
    ms.set_seed(0)
    net = inception_v4.inception_v4(num_classes=r.num_classes, drop_rate=r.drop_rate or 0.0,
                                    bn_momentum=r.bn_momentum, bn_beta_init=r.bn_beta_init)
    loss = optim.create_loss(r)
    lr = optim.create_lr_schedule(r, 1000)  # 3 epochs x 1000 steps: longer than any run of this bench
    opt = optim.create_optimizer(net, r, lr)
    step = build_train_step(net, loss, opt, r.loss_scale, 1, optim.optimizer_loss_scale(r),
                            check_gradients=False)  # as the trainer builds it for amp O0 (the CPU)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
    y = ms.Tensor(rng.integers(0, r.num_classes, batch).astype(np.int32))
    update, go = ms.Tensor(True), ms.Tensor(np.float32(0.0))

    def run():
        loss_value, _finite, _stop = step(x, y, update, go)
        return float(loss_value.asnumpy())  # the trainer reads the loss every step, metrics or not

    return run


class StepMetrics:
    """The trainer's per-step metrics calls around a train step, counting the steps they report."""

    def __init__(self, metrics, batch: int):
        self.batch = batch
        self.global_step = 0
        self.trainer = metrics.TrainerMetrics(0, {"model": "inception_v4", "world_size": "1",
                                                  "batch_size": str(batch), "recipe": "bench"})
        self.trainer.set_planned(10 ** 6, 1000)

    def step_finished(self, seconds: float, loss: float) -> None:
        self.global_step += 1
        self.trainer.steps_done(1, seconds, self.batch, 0.0005, loss, 0.01, self.global_step, 1)


def abba_rounds(run, step_metrics: StepMetrics, rounds: int) -> tuple[list, list, list]:
    """(off step times, on step times, per-round on/off ratios). Rounds of off, on, on, off: a drift of the
    machine's speed or a cost tied to a step's position in the round cancels out of each round's ratio."""
    def timed_off():
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    def timed_on():
        t0 = time.perf_counter()
        loss = run()
        step_metrics.step_finished(time.perf_counter() - t0, loss)
        return time.perf_counter() - t0

    off, on, ratios = [], [], []
    for _ in range(rounds):
        a1, b1, b2, a2 = timed_off(), timed_on(), timed_on(), timed_off()
        off += [a1, a2]
        on += [b1, b2]
        ratios.append((b1 + b2) / (a1 + a2))
    return off, on, ratios


def seconds_per_call(step_metrics: StepMetrics, iterations: int) -> float:
    """The per-step calls alone, many times, with a step's arguments."""
    t0 = time.perf_counter()
    for _ in range(iterations):
        step_metrics.step_finished(0.08, 2.0)
    return (time.perf_counter() - t0) / iterations


def scraped_steps_ok(metrics, global_step: int) -> bool:
    """The samples are really in the multiprocess directory: serve and scrape them as the launcher would."""
    server = metrics.serve(_free_port(), addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
            page = resp.read().decode()
    finally:
        server.shutdown()
    return f'incv4_steps_total{{rank="0"}} {float(global_step)}' in page


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs (a smoke run)")
    parser.add_argument("--size", type=int, default=75)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15, help="ABBA rounds (4 steps each) after warm-up")
    parser.add_argument("--call-iterations", type=int, default=20000)
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    rounds = 4 if args.quick else args.rounds
    workdir = tempfile.mkdtemp(prefix="incv4-metrics-bench-")
    from incv4.trainer.metrics import exporter as metrics  # imports no prometheus_client at module level

    metrics.prepare_multiprocess_dir(os.path.join(workdir, "prom"))  # before prometheus_client is imported
    step_metrics = StepMetrics(metrics, args.batch)
    run = _build_step(args.size, args.batch)
    started = time.perf_counter()
    run()
    compile_s = time.perf_counter() - started
    step_metrics.trainer.compile_finished(compile_s)
    for _ in range(3):  # warm-up
        run()
    off, on, ratios = abba_rounds(run, step_metrics, rounds)
    call_s = seconds_per_call(step_metrics, args.call_iterations)
    scraped_ok = scraped_steps_ok(metrics, step_metrics.global_step)

    off_med, on_med = statistics.median(off), statistics.median(on)
    result = {"case": "metrics_overhead", "overhead_ratio": statistics.median(ratios) - 1, "on_s": on_med,
              "off_s": off_med, "rounds": rounds, "metrics_call_us": call_s * 1e6,
              "call_share_of_cpu_step": call_s / off_med, "call_share_of_ascend_step": call_s / ASCEND_STEP_SECONDS,
              "compile_s": compile_s, "size": args.size, "batch": args.batch, "multiprocess_dir": True,
              "scraped_steps_ok": scraped_ok}
    print(f"train step {args.size}px batch {args.batch}: off {off_med * 1000:.1f} ms, on {on_med * 1000:.1f} ms "
          f"(median of {rounds} off-on-on-off rounds: overhead {100 * result['overhead_ratio']:+.2f}%)")
    print(f"metrics calls per step: {call_s * 1e6:.1f} us = {100 * result['call_share_of_cpu_step']:.4f}% of this "
          f"CPU step, {100 * result['call_share_of_ascend_step']:.3f}% of the "
          f"{ASCEND_STEP_SECONDS * 1000:.2f} ms Ascend step")
    print(json.dumps(result))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if scraped_ok else 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
