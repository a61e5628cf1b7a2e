"""`python -m bench [CASE ...] [--quick]`: set up the reference venv, run the cases, write bench/RESULTS.md and
bench/results.json. Cases: train_step, pipeline, render, metrics, launch, monitoring, scan,
checkpoint (default: all, in that order).

Each case holds /tmp/incv4-heavy.lock while it runs (the machine is shared; heavy runs must not overlap), so do not
wrap this command in `flock` yourself."""
from __future__ import annotations

import argparse
import fcntl
import importlib
import sys
import time
from contextlib import contextmanager

from bench import results
from bench.common import REF_PYTHON, incv4_python, machine_info, versions_of
from bench.setup_env import ensure_reference_venv

CASES = {"train_step": "bench.case_train_step", "pipeline": "bench.case_pipeline", "render": "bench.case_render",
         "metrics": "bench.case_metrics", "launch": "bench.case_launch", "monitoring": "bench.case_monitoring",
         "scan": "bench.case_scan", "checkpoint": "bench.case_checkpoint", "startup": "bench.case_startup",
         "loop": "bench.case_loop"}
NEEDS_REFERENCE = {"train_step", "pipeline", "launch"}
LOCK_PATH = "/tmp/incv4-heavy.lock"


@contextmanager
def heavy_lock(enabled: bool):
    if not enabled:
        yield
        return
    with open(LOCK_PATH, "a") as f:
        t = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.monotonic() - t
        if waited > 1:
            print(f"  (waited {waited:.0f} s for {LOCK_PATH})", flush=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"one or more of: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke check, not a result")
    parser.add_argument("--no-lock", action="store_true", help=f"do not take {LOCK_PATH}")
    parser.add_argument("--note", default="", help="a remark stored with the results (e.g. other load)")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    chosen = args.cases or list(CASES)
    if NEEDS_REFERENCE & set(chosen):
        ensure_reference_venv()
    versions = {"incv4 side": versions_of(incv4_python(), ["incv4", "mindspore", "numpy", "pillow",
                                                           "prometheus-client"]),
                "reference side": versions_of(str(REF_PYTHON), ["mindspore", "mindcv", "torch", "timm", "numpy",
                                                                "pillow"]) if REF_PYTHON.exists() else {}}
    status = 0
    for name in chosen:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        module = importlib.import_module(CASES[name])
        with heavy_lock(not args.no_lock):
            machine = machine_info()
            started = time.time()
            rows, notes, raw = module.run(args.quick, log=lambda msg: print(msg, flush=True))
        if args.note:
            notes = notes + [args.note]
        run_info = {"machine": machine, "versions": versions, "seconds": round(time.time() - started),
                    "options": {"quick": args.quick}, **raw}
        results.record(name, rows, run_info, notes)
        for row in rows:
            ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
            print(f"  {row.status:4} {row.case} | {row.metric}: incv4 {row.incv4} vs {row.reference_name} "
                  f"{row.reference} -> ratio {ratio} (target {row.target_text()})", flush=True)
            if row.note:
                print(f"       note: {row.note}", flush=True)
            if row.status == "n/a":
                status = 1
    print(f"wrote {results.RESULTS_MD} and {results.RESULTS_JSON}")
    return status


if __name__ == "__main__":
    sys.exit(main())
