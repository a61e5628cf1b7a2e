"""`incv4 demo`, shortened: demo data, 2 data-parallel workers through the real launcher for one short epoch, and
the final line with top-1 beside chance. The full demo (8 workers, the shipped recipe) is the README's main job;
its timing is measured by hand, not here."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_the_pipeline_and_reports_top1_beside_chance(tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-c", "from incv4.operator.cli import main; main()", "demo", "--work-dir", str(work),
         "--workers", "2", "--train-per-class", "4", "--val-per-class", "2", "--metrics-port", "0",
         "--set", "epoch_size=1",
         "--set", "batch_size=4",
         "--set", "warmup_epochs=0", "--set", "decay_epochs=1"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("demo data: 40 train / 20 val images, 10 classes")
    assert any(re.search(r"\[rank 0\] epoch 1/1 step 5/5 loss ", line) for line in lines)
    assert re.fullmatch(r"demo result: top-1 \d+\.\d% vs chance 10\.0% \(1/10\): (above|NOT above) chance",
                        lines[-1]), lines[-1]
    assert sorted(n for n in os.listdir(work / "ckpt") if n.endswith(".ckpt")) == ["incv4-e0001-s000000005.ckpt"]
