"""Case 4, CLI: cold wall time of `incv4 render` with MindCV's Ascend recipe (a new process each time, as a user
runs it; the file cache is warm after the first run, which is not counted). Target < 0.3 s. For scale, the same
interpreter's bare start-up (`python -c pass`) is measured alternately."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import REPO_ROOT, incv4_python, median
from bench.results import Row

ASCEND = REPO_ROOT / "configs" / "inception_v4_ascend.yaml"
# The first form that works is timed.
CANDIDATES = (["render", "--name", "incv4-bench", "--image", "registry.example.com/incv4:0.1.0",
               "--dataset-pvc", "imagenet", "--recipe", str(ASCEND)],)


def _render_argv() -> list[str]:
    incv4 = str(Path(incv4_python()).parent / "incv4")
    problems = []
    for args in CANDIDATES:
        res = subprocess.run([incv4, *args], capture_output=True, text=True, timeout=60)
        if res.returncode == 0 and "kind" in res.stdout:
            return [incv4, *args]
        problems.append(f"`incv4 {' '.join(args[:2])}` -> exit {res.returncode}: "
                        f"{(res.stderr.strip().splitlines() or [''])[-1][:160]}")
    raise RuntimeError("; ".join(problems))


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    repeats = 5 if quick else 15
    baseline_argv = [incv4_python(), "-c", "pass"]
    try:
        argv = _render_argv()
    except RuntimeError as err:
        return ([Row("incv4 render (Ascend recipe)", "cold wall s", None, None, "-", False, target_absolute=0.3,
                     note=f"render failed: {err}")], [], {})
    render_s, base_s = [], []
    for _ in range(repeats):
        render_s.append(_wall(argv))
        base_s.append(_wall(baseline_argv))
    log(f"  [render] median {median(render_s):.3f} s (python start-up {median(base_s):.3f} s)")
    row = Row("incv4 render (Ascend recipe)", "cold wall s", median(render_s), median(base_s),
              "python -c pass", False, target_absolute=0.3,
              note=f"command: incv4 {' '.join(Path(a).name if Path(a).is_file() else a for a in argv[1:])}")
    return [row], [f"{repeats} alternating runs each; reference = bare interpreter start-up, for scale only."], \
        {"render_s": render_s, "python_startup_s": base_s}
