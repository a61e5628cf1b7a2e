"""Case 5, metrics overhead: runs bench/metrics_overhead.py (step time with metrics on vs off, alternating in one
run) and records its figures. The script ends with a JSON line holding `overhead_ratio` (on/off - 1)."""
from __future__ import annotations

import json
import subprocess

from bench.common import BENCH_DIR, REPO_ROOT, incv4_python, worker_env
from bench.results import Row

SCRIPT = BENCH_DIR / "metrics_overhead.py"


def _parse(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.strip().startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    args = [incv4_python(), str(SCRIPT)] + (["--quick"] if quick else [])
    res = subprocess.run(args, capture_output=True, text=True, cwd=str(REPO_ROOT), env=worker_env(), timeout=3600)
    parsed = _parse(res.stdout)
    tail = res.stdout.strip().splitlines()[-1:] if res.stdout else res.stderr[-300:]
    log(f"  [metrics] exit {res.returncode}: {tail}")
    note = "" if parsed else f"could not read the script's result (exit {res.returncode})"
    return rows_from_parsed(parsed, note), \
        ["Measured by bench/metrics_overhead.py; its own output is in results.json."], \
        {"stdout_tail": res.stdout[-2000:], "stderr_tail": res.stderr[-1000:]}


def rows_from_parsed(parsed: dict, note: str = "") -> list[Row]:
    """Two figures: the step-time ratio (on/off, ABBA rounds: includes the machine's noise, which on a shared
    2-core machine is larger than the effect), and the metrics calls timed alone as a share of the step (CPU here,
    and MindCV's published 81 ms Ascend step), which is what the calls cost."""
    overhead = parsed.get("overhead_ratio")
    if overhead is None and "on_s" in parsed and "off_s" in parsed:
        overhead = parsed["on_s"] / parsed["off_s"] - 1
    label = "metrics on vs off (per step)"
    rows = [Row(label, "step-time overhead % (ABBA)", None if overhead is None else 100 * overhead, None,
                "metrics off", False, target_absolute=1.0, details=parsed,
                note=note or f"{parsed.get('rounds')} ABBA rounds of a {parsed.get('off_s', 0):.1f} s step; "
                             "the spread of step times on the shared machine is larger than the effect")]
    if parsed.get("metrics_call_us") is not None:
        rows.append(Row(label, "per-step calls, % of an Ascend step (81 ms)",
                        100 * parsed["call_share_of_ascend_step"], None, "-", False, target_absolute=1.0,
                        note=f"steps_done and friends: {parsed['metrics_call_us']:.1f} us per step, "
                             f"{100 * parsed['call_share_of_cpu_step']:.4f} % of the CPU step"))
    return rows
