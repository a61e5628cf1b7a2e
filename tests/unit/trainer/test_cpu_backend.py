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


def test_prepare_caps_only_for_mindspores_own_cpu_convolutions(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    said = []
    assert cpu_backend.prepare("Ascend", said.append) is None
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and said == []
    # incv4's op (trainer/cpu_conv.py) never hands oneDNN an NCHW convolution: no cap, AVX-512 kernels where any
    assert cpu_backend.prepare("CPU", said.append).endswith(".so")
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ and len(said) == 1 and "incv4's oneDNN op" in said[0]
    monkeypatch.setenv("INCV4_CPU_CONV", "mindspore")
    assert cpu_backend.prepare("CPU", said.append) is None
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert len(said) == 3 and "ONEDNN_MAX_CPU_ISA" in said[2]
    cpu_backend.prepare("CPU", said.append)  # already capped: only the convolutions line again
    assert len(said) == 4


def _env_without_cap(**extra):
    env = {k: v for k, v in os.environ.items() if k != cpu_backend.ISA_ENV}
    env.update(extra)
    return env


def _validate_under_onednn_verbose(repo_root, tmp_path, **env):
    """`incv4 validate` of a fresh network, started without the cap, with ONEDNN_VERBOSE listing every oneDNN
    kernel it runs: (result, stdout lines, the convolution kernels' lines)."""
    import mindspore as ms

    from incv4.trainer.model import inception_v4 as model
    from incv4.trainer.data.demo import write_demo_dataset

    data = tmp_path / "data"
    write_demo_dataset(str(data), num_classes=10, train_per_class=1, val_per_class=1, image_size=80)
    ckpt = tmp_path / "net.ckpt"
    ms.save_checkpoint(model.inception_v4(num_classes=10), str(ckpt))
    result = subprocess.run(
        [sys.executable, "-c", "from incv4.operator.cli import main; main()", "validate", "-c", str(repo_root / DEMO),
         "--data-dir", str(data), "--ckpt-path", str(ckpt), "-o", "json"],
        capture_output=True, text=True, timeout=600, env=_env_without_cap(ONEDNN_VERBOSE="1", **env))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.splitlines()
    assert json.loads([line for line in out if line.startswith("{")][-1])["samples"] == 10
    convolutions = [line for line in out if line.startswith("onednn_verbose,v1,primitive,exec,cpu,convolution,")]
    assert convolutions, "no convolution ran under ONEDNN_VERBOSE"
    assert not [line for line in convolutions if "jit_uni_ncsp" in line], convolutions[:3]  # the ~20x slow one
    return result, out, convolutions


def test_validate_runs_its_convolutions_through_incv4s_op_in_blocked_layouts(repo_root, tmp_path):
    result, out, convolutions = _validate_under_onednn_verbose(repo_root, tmp_path)
    assert "CPU convolutions: incv4's oneDNN op" in result.stdout + result.stderr
    assert "oneDNN capped" not in result.stdout + result.stderr
    # oneDNN chose the layouts: 149 convolutions, none on plain NCHW (abcd) source memory except the stem's first
    # (3 input channels: oneDNN's direct kernels take that one plain)
    plain = [line for line in convolutions if "src:f32::blocked:abcd:" in line]
    assert len(plain) <= len(convolutions) // 100 + 1, plain[:3]


def test_validate_with_mindspores_convolutions_runs_them_under_the_cap(repo_root, tmp_path):
    result, out, convolutions = _validate_under_onednn_verbose(repo_root, tmp_path, INCV4_CPU_CONV="mindspore")
    assert "onednn_verbose,v1,info,cpu,isa:Intel AVX2" in out, [line for line in out if ",info,cpu," in line]
    assert "oneDNN capped at AVX2" in result.stdout + result.stderr
    assert all("src:f32::blocked:abcd:" in line for line in convolutions), convolutions[:3]
