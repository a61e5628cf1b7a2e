"""Per-kernel profile of one MindSpore side's train step (MindSpore's profiler on the CPU backend):
`python -m bench.experiments.step_profile --side incv4 --size 75 [--steps 3] [train_worker flags, e.g.
--optimizer decay_in_kernel]`. Builds the step exactly as bench/train_worker.py does (its flags), compiles,
warms up 2 steps, profiles --steps steps and prints milliseconds per step by kernel type (from the profiler's
cpu_op_type_info CSV). The machine must be otherwise idle. Output under bench/.cache/profile-<side>-<size>/."""
from __future__ import annotations

import argparse
import csv
import time

from bench import train_worker
from bench.common import CACHE_DIR


def summarise(csv_path, steps: int, top: int = 20) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    total = sum(float(r["total_compute_time"]) for r in rows) / steps
    print(f"kernel time {total:.0f} ms/step")
    print(f"{'kernel':24} {'per step':>8} {'ms/step':>8} {'share':>6}")
    for r in sorted(rows, key=lambda r: -float(r["total_compute_time"]))[:top]:
        ms = float(r["total_compute_time"]) / steps
        print(f"{r['op_type']:24} {r['execution_frequency(per-step)']:>8} {ms:8.1f} {100 * ms / total:5.1f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    args, worker_argv = parser.parse_known_args(argv)
    # every other flag (--side, --size, --batch, --optimizer, ...) builds the step as bench/train_worker.py does
    worker_args = train_worker.argument_parser().parse_args(worker_argv)
    one_step, _ = train_worker.build(worker_args)
    t0 = time.perf_counter()
    one_step()
    print(f"compile (first step) {time.perf_counter() - t0:.1f} s")
    for _ in range(2):
        one_step()
    from mindspore.profiler import Profiler

    out = CACHE_DIR / f"profile-{worker_args.side}-{worker_args.size}"
    profiler = Profiler(output_path=str(out))
    t0 = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    print(f"wall {1000 * (time.perf_counter() - t0) / args.steps:.0f} ms/step under the profiler")
    profiler.stop()
    profiler.analyse()
    newest = max(out.glob("*/FRAMEWORK/cpu_op_type_info_*.csv"), key=lambda p: p.stat().st_mtime)
    summarise(newest, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
