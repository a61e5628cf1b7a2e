"""Case 4, CLI: cold wall time of `incv4 render` with MindCV's Ascend recipe (a new process each time, as a user
runs it; the file cache is warm after the first run, which is not counted), for one node and for a 128-node job.
Target < 0.3 s. Also `incv4 submit` of the 128-node job: with `--dry-run=client` (every request built and printed,
nothing sent) and for real against the stand-in API server (tests/support/fake_apiserver.py: the ConfigMap POST,
the Job POST, the ConfigMap PUT that makes the job its owner, over loopback HTTP; preflight skipped, it reads the
cluster, not the run). For scale, the same interpreter's bare start-up (`python -c pass`) is measured alternately."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO_ROOT, incv4_python, median
from bench.results import Row

ASCEND = REPO_ROOT / "configs" / "inception_v4_ascend.yaml"
RUN_FLAGS = ["--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet", "--ckpt-pvc", "incv4-ckpt",
             "--recipe", str(ASCEND)]
BIG_JOB_NODES = 128


def _incv4() -> str:
    return str(Path(incv4_python()).parent / "incv4")


def _commands(kubeconfig: str) -> dict:
    """label -> argv builder (a run index gives each real submit its own job name)."""
    incv4 = _incv4()
    return {
        "render 1 node": lambda i: [incv4, "render", "--name", "incv4-bench", *RUN_FLAGS],
        f"render {BIG_JOB_NODES} nodes": lambda i: [incv4, "render", "--name", "incv4-bench", "--nodes",
                                                    str(BIG_JOB_NODES), *RUN_FLAGS],
        f"submit --dry-run=client {BIG_JOB_NODES} nodes": lambda i: [
            incv4, "submit", "--name", "incv4-bench", "--nodes", str(BIG_JOB_NODES), "--dry-run=client", "-o", "json",
            *RUN_FLAGS],
        f"submit {BIG_JOB_NODES} nodes (stand-in API server)": lambda i: [
            incv4, "submit", "--name", f"incv4-bench-{i}", "--nodes", str(BIG_JOB_NODES), "--skip-preflight",
            "--kubeconfig", kubeconfig, "-n", "default", *RUN_FLAGS],
    }


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(Path(a).name for a in argv[:2])}` exit {res.returncode}: "
                           f"{(res.stderr.strip().splitlines() or [''])[-1][:200]}")
    return took


def _measure(commands: dict, repeats: int, log) -> tuple[dict, dict]:
    """Each command once unrecorded (warm file cache, proves it works), then `repeats` rounds alternating with the
    bare interpreter. Returns (label -> walls, label -> error)."""
    walls = {label: [] for label in commands}
    walls["python -c pass"] = []
    errors = {}
    for label, argv in commands.items():
        try:
            _wall(argv(-1))
        except RuntimeError as err:
            errors[label] = str(err)
    for i in range(repeats):
        for label, argv in commands.items():
            if label not in errors:
                walls[label].append(_wall(argv(i)))
        walls["python -c pass"].append(_wall([incv4_python(), "-c", "pass"]))
    for label, values in walls.items():
        if values:
            log(f"  [render] {label}: median {median(values):.3f} s")
    return walls, errors


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    repeats = 5 if quick else 15
    sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
    from fake_apiserver import FakeApiServer

    with tempfile.TemporaryDirectory(prefix="incv4-bench-render-") as tmp, FakeApiServer() as api:
        kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        walls, errors = _measure(_commands(kubeconfig), repeats, log)
    base = median(walls["python -c pass"])
    rows = []
    for label in _commands(""):
        target = 0.3 if label.startswith("render") else None
        note = errors.get(label, "")
        rows.append(Row(f"incv4 {label} (Ascend recipe)", "cold wall s", median(walls[label]), base,
                        "python -c pass", False, target_absolute=target, note=note))
    notes = [f"{repeats} alternating runs each, new process each time; reference = bare interpreter start-up, for "
             f"scale only. The real submit creates {BIG_JOB_NODES}-node jobs on tests/support/fake_apiserver.py "
             "(loopback, in the bench process); --skip-preflight, since doctor's checks read the cluster."]
    return rows, notes, {f"{label}_s": values for label, values in walls.items()}
