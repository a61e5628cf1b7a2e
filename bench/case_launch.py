"""Case 3, launch and data parallel: 8 workers on the CPU at 75x75, batch 2 per worker, one epoch of a small
generated ImageFolder. incv4 (`incv4 train --workers 8`: incv4's launcher and trainer) vs plain `msrun` running
bench/mindcv_dp_train.py (MindCV's train.py, trained MindCV's way), one side at a time (16 MindSpore processes at
once would not fit), alternating when there is more than one round.

Measured from the command's start: when every rank finished its first step (launch + compile overhead), the
steady step time (median interval between a rank's consecutive steps after its first, median over ranks), and the
peak RSS of the biggest worker. incv4's step times come from its own /metrics endpoint
(incv4_last_step_timestamp_seconds per rank, polled every 0.5 s); MindCV's from a step callback's log lines."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import CACHE_DIR, MINDSPORE_CPU_ENV, REF_VENV, REPO_ROOT, incv4_python, median, worker_env
from bench.results import Row

WORKERS, BATCH, SIZE, CLASSES = 8, 2, 75, 8
DEMO_RECIPE = REPO_ROOT / "configs" / "inception_v4_cpu_demo.yaml"


def overrides(steps: int) -> list[str]:
    """The recipe both sides train: the CPU demo recipe at 75px, batch 2 per worker, one epoch, no evaluation."""
    return [f"batch_size={BATCH}", f"image_resize={SIZE}", "epoch_size=1", "val_while_train=False",
            f"num_classes={CLASSES}", "warmup_epochs=0", "decay_epochs=1"]


def make_data(steps: int) -> Path:
    """CLASSES folders of small JPEGs, exactly steps x WORKERS x BATCH images (one epoch = `steps` steps)."""
    from PIL import Image

    per_class = steps * WORKERS * BATCH // CLASSES
    root = CACHE_DIR / f"launch-data-{steps}"
    if (root / ".done").exists():
        return root
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        folder = root / "train" / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(rng.normal(30 * c, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"{i:03d}.jpg", quality=90)
        (root / "val" / f"class_{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / "val" / f"class_{c}" / "0.jpg", quality=90)
    (root / ".done").touch()
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Watch:
    """Polls a running job: memory of its processes, and (for incv4) its metrics endpoint."""

    def __init__(self, proc: subprocess.Popen, metrics_url: str = ""):
        self.proc, self.metrics_url = proc, metrics_url
        self.max_worker_rss = 0.0
        self.max_total_rss = 0.0
        self.step_times: dict[int, list[float]] = {}

    def poll(self) -> None:
        rss = [_rss_mb(p) for p in _descendants(self.proc.pid)]
        if rss:
            self.max_worker_rss = max(self.max_worker_rss, max(rss))
            self.max_total_rss = max(self.max_total_rss, sum(rss))
        if self.metrics_url:
            try:
                text = urllib.request.urlopen(self.metrics_url, timeout=2).read().decode()
            except OSError:
                return
            for m in re.finditer(r'^incv4_last_step_timestamp_seconds\{([^}]*)\}\s+(\S+)', text, re.M):
                rank = re.search(r'rank="(\d+)"', m.group(1))
                value = float(m.group(2))
                if rank and value > 0:
                    seen = self.step_times.setdefault(int(rank.group(1)), [])
                    if not seen or value != seen[-1]:
                        seen.append(value)


def _run(cmd: list[str], env: dict, log_path: Path, timeout: float, metrics_url: str = "", log=print):
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env,
                                start_new_session=True)
        watch = Watch(proc, metrics_url)
        try:
            while proc.poll() is None:
                if time.time() - t0 > timeout:
                    raise TimeoutError(f"{cmd[0]} still running after {timeout:.0f} s")
                watch.poll()
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return t0, proc.returncode, watch


def _summary(t0: float, step_times: dict, rc: int, watch: Watch, steps: int) -> dict:
    firsts = {r: ts[0] - t0 for r, ts in step_times.items() if ts}
    intervals = [median(list(np.diff(ts[1:]))) for ts in step_times.values() if len(ts) >= 3]
    return {"exit_code": rc, "ranks_seen": len(firsts), "all_ranks_first_step_s": max(firsts.values()) if
            len(firsts) == WORKERS else None, "first_step_s_by_rank": firsts,
            "steady_step_s": median([i for i in intervals if i is not None]) if intervals else None,
            "steps_by_rank": {r: len(ts) for r, ts in step_times.items()}, "steps_planned": steps,
            "max_worker_rss_mb": watch.max_worker_rss or None, "max_total_rss_mb": watch.max_total_rss or None}


def run_incv4(data_dir: Path, steps: int, log=print) -> dict:
    port = _free_port()
    incv4 = Path(incv4_python()).parent / "incv4"
    work = CACHE_DIR / "launch-incv4"
    shutil.rmtree(work, ignore_errors=True)  # cold: no compile cache or checkpoint from an earlier run
    cmd = [str(incv4), "train", "--workers", str(WORKERS), "--config", str(DEMO_RECIPE), "--data-dir",
           str(data_dir), "--no-resume", "--metrics-port", str(port)]
    for item in overrides(steps) + [f"ckpt_save_dir={work / 'ckpt'}"]:
        cmd += ["--set", item]
    t0, rc, watch = _run(cmd, worker_env(), CACHE_DIR / "logs" / "launch_incv4.log", timeout=1800,
                         metrics_url=f"http://127.0.0.1:{port}/metrics", log=log)
    return _summary(t0, watch.step_times, rc, watch, steps)


def run_msrun(data_dir: Path, steps: int, log=print) -> dict:
    log_dir = CACHE_DIR / "launch-msrun-logs"
    for old in log_dir.glob("*.log"):
        old.unlink()
    cmd = [str(REF_VENV / "bin" / "msrun"), f"--worker_num={WORKERS}", f"--local_worker_num={WORKERS}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", f"--log_dir={log_dir}", "--join=True",
           # msrun runs `python SCRIPT ARGS` itself (the `python` first on PATH: the reference venv's)
           "--cluster_time_out=900", str(REPO_ROOT / "bench" / "mindcv_dp_train.py"),
           "--config", str(DEMO_RECIPE), "--data-dir", str(data_dir)]
    for item in overrides(steps):
        cmd += ["--set", item]
    env = worker_env(MINDSPORE_CPU_ENV)  # the oneDNN cap incv4's workers set for themselves: the same kernels
    env["PATH"] = str(REF_VENV / "bin") + os.pathsep + env.get("PATH", "")
    t0, rc, watch = _run(cmd, env, CACHE_DIR / "logs" / "launch_msrun.log", timeout=1800, log=log)
    step_times: dict[int, list[float]] = {}
    for path in log_dir.glob("*.log"):
        for m in re.finditer(r"^@@STEP (\d+) (\d+) (\S+)", path.read_text(errors="replace"), re.M):
            step_times.setdefault(int(m.group(1)), []).append(float(m.group(3)))
    return _summary(t0, step_times, rc, watch, steps)


def _previous_raw() -> dict:
    from bench import results

    case = results.load()["cases"].get("launch", {})
    return {"raw": case.get("run", {}).get("raw", {}), "date": case.get("date", "?")}


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    """BENCH_LAUNCH_SIDES=msrun (or incv4) re-measures one side only and keeps the other side's figures from the
    previous recorded run (said so in the notes): each side takes minutes, and the two run one after the other
    anyway."""
    steps = 3 if quick else 8
    rounds = 1
    data_dir = make_data(steps)
    only = [s for s in os.environ.get("BENCH_LAUNCH_SIDES", "msrun,incv4").split(",") if s]
    raw = {"incv4": [], "msrun": []}
    kept = []
    if set(only) != {"msrun", "incv4"}:
        previous = _previous_raw()
        for side in ("msrun", "incv4"):
            if side not in only and previous["raw"].get(side):
                raw[side] = previous["raw"][side]
                kept.append(f"{side} side: figures kept from the run recorded {previous['date']}")
    for r in range(rounds):
        for side, fn in (("msrun", run_msrun), ("incv4", run_incv4)):
            if side not in only:
                continue
            log(f"  [launch 8 workers] {side}: running {steps} steps ...")
            try:
                res = fn(data_dir, steps, log)
            except Exception as err:  # noqa: BLE001 - one side failing still reports the other
                res = {"error": f"{type(err).__name__}: {err}"}
            raw[side].append(res)
            log(f"    {side}: {res}")
    def med(side, key):
        return median([x[key] for x in raw[side] if x.get(key) is not None])

    def note(side):
        bad = [x for x in raw[side] if x.get("error") or x.get("exit_code")]
        return "; ".join(f"{side}: {x.get('error') or 'exit ' + str(x.get('exit_code'))}" for x in bad)

    notes_txt = "; ".join(n for n in (note("incv4"), note("msrun")) if n)
    ref = "msrun + MindCV 0.3.0"
    rows = [Row("launch 8 workers 75px b2", "s to every rank's first step", med("incv4", "all_ranks_first_step_s"),
                med("msrun", "all_ranks_first_step_s"), ref, False, target_ratio=1.0, note=notes_txt),
            Row("launch 8 workers 75px b2", "steady s/step", med("incv4", "steady_step_s"),
                med("msrun", "steady_step_s"), ref, False, target_ratio=1 / 0.8),
            Row("launch 8 workers 75px b2", "peak RSS per worker MB", med("incv4", "max_worker_rss_mb"),
                med("msrun", "max_worker_rss_mb"), ref, False)]
    notes = [f"Both sides: the CPU demo recipe (configs/inception_v4_cpu_demo.yaml) with {' '.join(overrides(steps))}; "
             f"{steps * WORKERS * BATCH} generated 96x96 JPEGs in {CLASSES} classes = {steps} steps of global batch "
             f"{WORKERS * BATCH}; graph mode, fp32, dataset sink off, no checkpoint inside the epoch.",
             "msrun side: MindSpore's own thread and communication defaults (what a MindCV user gets), with oneDNN "
             "capped at AVX2 (MindSpore's convolutions are ~20x slower without it on an AVX-512 CPU). incv4 side: "
             "whatever incv4's launcher and trainer set: the same oneDNN cap and MindSpore Conv2D, fused gradient "
             "all-reduce, a loss check instead of a per-gradient one, 1 kernel thread per worker, lazy-inlined "
             "Inception blocks, and compile sharing (the first worker compiles, the other 7 load its compile "
             "cache). Both sides start cold: no compile cache from an earlier run.",
             f"{rounds} run(s) per side, one side after the other (each run costs minutes; msrun's 8 workers "
             "compile the same graph at once on 2 cores)."] + kept
    return rows, notes, {"raw": raw}
