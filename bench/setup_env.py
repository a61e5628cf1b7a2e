"""Creates bench/.venv with the reference implementations (bench/requirements-ref.txt), once."""
from __future__ import annotations

import subprocess
import sys

from bench.common import BENCH_DIR, REF_PYTHON, REF_VENV

REQUIREMENTS = BENCH_DIR / "requirements-ref.txt"
CHECK = "import mindspore, mindcv, torch, timm, PIL"


def reference_ready() -> bool:
    if not REF_PYTHON.exists():
        return False
    return subprocess.run([str(REF_PYTHON), "-c", CHECK], capture_output=True, env={"GLOG_v": "3"}).returncode == 0


def ensure_reference_venv(log=print) -> None:
    if reference_ready():
        return
    log(f"setting up {REF_VENV} (MindCV, PyTorch, timm; several GB, once) ...")
    if not REF_PYTHON.exists():
        subprocess.run(["python3", "-m", "venv", str(REF_VENV)], check=True)
    pip = [str(REF_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    if not reference_ready():
        sys.exit(f"bench: {REF_VENV} was set up but `{CHECK}` still fails there")
