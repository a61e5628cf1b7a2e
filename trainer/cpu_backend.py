"""Settings MindSpore's CPU backend needs before its first kernel runs.

MindSpore's CPU Conv2D kernels hand oneDNN plain NCHW tensors. On a CPU with AVX-512, the oneDNN bundled with
MindSpore answers with its `jit_uni_ncsp` convolution, which is about 20x slower than the im2col + GEMM convolution
(`gemm:jit`) it picks on an AVX2-only CPU, so the trainer caps oneDNN at AVX2 on the CPU backend.
oneDNN reads its ISA cap (ONEDNN_MAX_CPU_ISA) once, when it runs its first kernel, so the cap is set in the
environment before then. A value the user set is left alone.
"""
from __future__ import annotations

import os
from typing import Callable, MutableMapping, Optional

ISA_ENV = "ONEDNN_MAX_CPU_ISA"
ISA_CAP = "AVX2"


def cap_onednn_isa(environ: MutableMapping[str, str] = os.environ) -> Optional[str]:
    """Cap oneDNN at AVX2 unless `environ` already names a cap. Returns the cap it set, or None if it set none."""
    if environ.get(ISA_ENV, "").strip():
        return None
    environ[ISA_ENV] = ISA_CAP
    return ISA_CAP


def prepare(device: str, say: Callable[[str], None]) -> None:
    """Call after choosing the device and before MindSpore runs a kernel. On the CPU: cap oneDNN at AVX2 (one log
    line when this call set it). Elsewhere (Ascend: the convolutions are CANN's) nothing changes."""
    if device == "CPU" and cap_onednn_isa():
        say(f"CPU kernels: oneDNN capped at {ISA_CAP} ({ISA_ENV}); its AVX-512 convolution for MindSpore's NCHW "
            f"tensors is ~20x slower. Set {ISA_ENV} to choose another cap")
