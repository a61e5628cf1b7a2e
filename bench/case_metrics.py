"""Case 5, metrics overhead: runs engineer 5's bench/metrics_overhead.py (step time with metrics on vs off,
alternating in one run) and records its figure. The script prints a JSON line with `overhead_ratio`
(on/off - 1) or, failing that, a line with "overhead" and a percentage, which is parsed."""
from __future__ import annotations

import json
import re
import subprocess

from bench.common import BENCH_DIR, REPO_ROOT, incv4_python, worker_env
from bench.results import Row

SCRIPT = BENCH_DIR / "metrics_overhead.py"


def _parse(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        line = line.strip().lstrip("@")
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    m = re.search(r"overhead[^\n]*?(-?\d+(?:\.\d+)?)\s*%", stdout, re.I)
    if m:
        return {"overhead_ratio": float(m.group(1)) / 100}
    return {}


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    label = "metrics on vs off (per step)"
    if not SCRIPT.exists():
        return [Row(label, "overhead %", None, None, "metrics off", False, target_absolute=1.0,
                    note="bench/metrics_overhead.py (engineer 5) is not there yet")], [], {}
    # --rounds 6: the script's lr schedule has 30 entries (the demo recipe's 3 epochs x 10 steps) and MindSpore's
    # dynamic lr gathers out of range after step 30; 1 compile + 3 warm-up + 6 x 4 steps stay within it.
    args = [incv4_python(), str(SCRIPT)] + (["--quick"] if quick else ["--rounds", "6"])
    res = subprocess.run(args, capture_output=True, text=True, cwd=str(REPO_ROOT), env=worker_env(), timeout=3600)
    if res.returncode != 0 and quick:  # the script may not know --quick
        res = subprocess.run(args[:2], capture_output=True, text=True, cwd=str(REPO_ROOT), env=worker_env(),
                             timeout=3600)
    parsed = _parse(res.stdout)
    log(f"  [metrics] exit {res.returncode}: {res.stdout.strip().splitlines()[-1:] if res.stdout else res.stderr[-300:]}")
    note = "" if parsed else f"could not read the script's result (exit {res.returncode})"
    return rows_from_parsed(parsed, note), \
        ["Measured by bench/metrics_overhead.py (engineer 5's); its own output is in results.json."], \
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
