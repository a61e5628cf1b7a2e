"""The oneDNN ISA cap the trainer sets on the CPU backend (trainer/cpu_backend.py), and that a real trainer
process runs its convolutions under it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from incv4.trainer import cpu_backend

DEMO = "configs/inception_v4_cpu_demo.yaml"


def test_the_cap_is_set_when_absent_and_a_users_own_cap_is_kept():
    environ = {}
    assert cpu_backend.cap_onednn_isa(environ) == "AVX2"
    assert environ == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    users = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert cpu_backend.cap_onednn_isa(users) is None
    assert users == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}


def test_prepare_caps_and_says_so_on_the_cpu_only(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    said = []
    cpu_backend.prepare("Ascend", said.append)
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and said == []
    cpu_backend.prepare("CPU", said.append)
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert len(said) == 1 and "ONEDNN_MAX_CPU_ISA" in said[0]
    cpu_backend.prepare("CPU", said.append)  # already set: nothing more to say
    assert len(said) == 1


def _env_without_cap(**extra):
    env = {k: v for k, v in os.environ.items() if k != cpu_backend.ISA_ENV}
    env.update(extra)
    return env


def test_validate_runs_its_convolutions_under_the_cap(repo_root, tmp_path):
    """`incv4 validate` in a process started without the cap: oneDNN reports AVX2 as its ISA and runs no
    `jit_uni_ncsp` convolution (the slow one on AVX-512 machines). ONEDNN_VERBOSE lists every kernel it runs."""
    import mindspore as ms

    from incv4.trainer import model
    from incv4.trainer.demo_data import write_demo_dataset

    data = tmp_path / "data"
    write_demo_dataset(str(data), num_classes=10, train_per_class=1, val_per_class=1, image_size=80)
    ckpt = tmp_path / "net.ckpt"
    ms.save_checkpoint(model.inception_v4(num_classes=10), str(ckpt))
    result = subprocess.run(
        [sys.executable, "-c", "from incv4.operator.cli import main; main()", "validate", "-c", str(repo_root / DEMO),
         "--data-dir", str(data), "--ckpt-path", str(ckpt), "-o", "json"],
        capture_output=True, text=True, timeout=600, env=_env_without_cap(ONEDNN_VERBOSE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.splitlines()
    assert json.loads([line for line in out if line.startswith("{")][-1])["samples"] == 10
    assert "onednn_verbose,v1,info,cpu,isa:Intel AVX2" in out, [l for l in out if ",info,cpu," in l]
    convolutions = [line for line in out if line.startswith("onednn_verbose,v1,primitive,exec,cpu,convolution,")]
    assert convolutions, "no convolution ran under ONEDNN_VERBOSE"
    assert not [line for line in convolutions if "jit_uni_ncsp" in line], convolutions[:3]
    assert "oneDNN capped at AVX2" in result.stderr + result.stdout
