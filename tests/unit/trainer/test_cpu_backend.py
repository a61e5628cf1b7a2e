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
    blank = {"ONEDNN_MAX_CPU_ISA": "  "}  # set but empty: no cap named, so the trainer's applies
    assert cpu_backend.cap_onednn_isa(blank) == "AVX2" and blank == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_prepare_caps_the_cpu_backend_once_and_says_so(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    said = []
    assert cpu_backend.prepare("CPU", said.append) is None
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert len(said) == 1 and "oneDNN capped at AVX2" in said[0] and "ONEDNN_MAX_CPU_ISA" in said[0]
    assert cpu_backend.prepare("CPU", said.append) is None  # already capped: nothing more to say
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and len(said) == 1


def test_prepare_keeps_the_users_own_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    said = []
    assert cpu_backend.prepare("CPU", said.append) is None
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE" and said == []


def test_prepare_changes_nothing_off_the_cpu(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    said = []
    for device in ("Ascend", "GPU"):
        assert cpu_backend.prepare(device, said.append) is None
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and said == []


def _env_without_cap(**extra):
    env = {k: v for k, v in os.environ.items() if k != cpu_backend.ISA_ENV}
    env.update(extra)
    return env


def test_validate_runs_its_convolutions_under_the_avx2_cap(repo_root, tmp_path):
    """`incv4 validate` of a fresh network, started without the cap, with ONEDNN_VERBOSE listing every oneDNN
    kernel it runs: the trainer sets the cap itself, and every convolution runs as AVX2 kernels, none of them the
    slow AVX-512 NCHW one."""
    import mindspore as ms

    from incv4.trainer.data.demo import write_demo_dataset
    from incv4.trainer.model import inception_v4 as model

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
    assert "oneDNN capped at AVX2" in result.stdout + result.stderr
    assert "onednn_verbose,v1,info,cpu,isa:Intel AVX2" in out, [line for line in out if ",info,cpu," in line]
    convolutions = [line for line in out if line.startswith("onednn_verbose,v1,primitive,exec,cpu,convolution,")]
    assert convolutions, "no convolution ran under ONEDNN_VERBOSE"
    assert not [line for line in convolutions if "jit_uni_ncsp" in line], convolutions[:3]  # the ~20x slow one
    assert not [line for line in convolutions if "avx512" in line], convolutions[:3]
    # MindSpore's own kernels: plain NCHW (abcd) source memory throughout
    assert all("src:f32::blocked:abcd:" in line for line in convolutions), convolutions[:3]
