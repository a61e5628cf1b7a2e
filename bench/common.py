"""What every case shares: where things live, medians, subprocess workers speaking JSON lines, versions."""
from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"          # generated data, logs (gitignored)
REF_VENV = BENCH_DIR / ".venv"            # MindCV + PyTorch/timm (gitignored)
REF_PYTHON = REF_VENV / "bin" / "python"


def incv4_python() -> str:
    """The incv4 side runs in the project's own environment, the one `python -m bench` was started with."""
    return sys.executable


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(**record) -> None:
    """A worker's answer to its parent: one JSON object per line on stdout."""
    sys.stdout.write("@@" + json.dumps(record) + "\n")
    sys.stdout.flush()


def worker_main(main):
    """A worker's main(argv): an exception in it is a traceback on stderr and one `error` record for the parent,
    and exit code 1; otherwise exit code 0."""
    @functools.wraps(main)
    def run(argv=None) -> int:
        try:
            main(argv)
        except Exception as err:
            traceback.print_exc()
            emit(error=f"{type(err).__name__}: {err}")
            return 1
        return 0
    return run


# The oneDNN cap incv4's trainer sets for MindSpore's CPU convolutions (incv4.trainer.cpu_backend), given to MindCV's
# side too (its best: uncapped, an AVX-512 CPU runs MindSpore's NCHW convolutions through oneDNN's ~20x slower
# `jit_uni_ncsp` path). timm's PyTorch gets none: its oneDNN picks blocked layouts.
MINDSPORE_CPU_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def worker_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    # `bench` must import in the reference venv too, and `incv4` resolves through the project's install.
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("GLOG_v", "3")  # MindSpore: errors only, keeps worker stdout parseable
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class Worker:
    """A long-lived benchmark process: started once (so it compiles once), then told to run steps on demand, so
    two sides can alternate step by step while each keeps its compiled graph."""

    def __init__(self, python: str, module: str, args: Sequence[str], log_path: Path, env: Optional[dict] = None):
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([python, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, cwd=str(REPO_ROOT), env=worker_env(env))

    def read(self) -> dict:
        """The next JSON record; other stdout lines go to the log."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")
            if line.startswith("@@"):
                record = json.loads(line[2:])
                if "error" in record:
                    raise RuntimeError(f"worker failed: {record['error']} (log {self.log_path})")
                return record
            self._log.write(line)
            self._log.flush()

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> dict:
        try:
            return self.ask("quit")
        finally:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def run_json(python: str, module: str, args: Sequence[str], log_path: Path, timeout: float = 1800,
             env: Optional[dict] = None) -> dict:
    """Run a one-shot worker and return its last JSON record."""
    worker = Worker(python, module, args, log_path, env)
    try:
        worker.proc.stdin.close()
        record = worker.read()
        worker.proc.wait(timeout=timeout)
        return record
    finally:
        worker.kill()


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": [round(x, 2) for x in load]}


def versions_of(python: str, modules: Sequence[str]) -> dict:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            f"for name in {list(modules)!r}:\n"
            "    try: out[name] = m.version(name)\n"
            "    except Exception: out[name] = None\n"
            "print(json.dumps(out))")
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(res.stdout.strip().splitlines()[-1])
    except Exception as err:  # a missing venv is reported, not fatal
        return {"error": str(err)}
