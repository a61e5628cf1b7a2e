"""InceptionV4's convolutions on the CPU as a MindSpore custom op running oneDNN in blocked layouts.

MindSpore's own CPU Conv2D kernels hand oneDNN plain NCHW memory, for which oneDNN has only its im2col + GEMM
convolution (and, on AVX-512 CPUs, a ~20x slower one: trainer/cpu_backend.py). Here oneDNN picks the layout
(format_tag::any) and so its direct JIT kernels, AVX-512 ones where the CPU has them, with reorders from and to
NCHW around them because every other MindSpore kernel holds NCHW (trainer/cpu_conv.cc). The forward pass and the
backward pass (both gradients in one kernel, sharing dy's reorder, and the weight decay added to the weight's
gradient in the same kernel) are AOT kernels (`ops.Custom(func_type="aot")`; the backward is the forward's bprop).
Measured on an Intel Xeon with AVX-512, 2 cores, batch 8 (bench/FINDINGS.md, session 8): a train step 1.45x
faster at 75 px and 1.56x at 299 px than with MindSpore's convolutions, and ~20 % less memory.

The kernels link MindSpore's own libdnnl.so.3 and are compiled once per source version with g++ against oneDNN v3's
C++ headers, which MindSpore's wheel does not ship: `make setup` installs PyPI's onednn-devel (headers only, with
--no-deps). Without g++ or the headers the trainer keeps MindSpore's convolutions and says so.
Parameters keep their names (`....conv.weight`), so checkpoints are the same either way.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

CHOICE_ENV = "INCV4_CPU_CONV"  # auto (default): the op when it builds; mindspore: MindSpore's Conv2D
HEADERS_ENV = "INCV4_ONEDNN_INCLUDE"  # a directory holding oneapi/dnnl/dnnl.hpp, if not in this environment
DEVEL_HEADER = "oneapi/dnnl/dnnl.hpp"
SOURCE = Path(__file__).with_name("cpu_conv.cc")
POOL_HEADER = Path(__file__).with_name("onednn_pool.h")


class Unavailable(Exception):
    """The op cannot be built here; the message says why in one line."""


def header_dir() -> Optional[str]:
    """oneDNN's headers: $INCV4_ONEDNN_INCLUDE, else this environment's include/ (where onednn-devel puts them)."""
    for candidate in (os.environ.get(HEADERS_ENV, ""), str(Path(sys.prefix) / "include")):
        if candidate and (Path(candidate) / DEVEL_HEADER).is_file():
            return candidate
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "incv4"


def library() -> Path:
    """The kernels' shared library, compiled on first use. Processes that start together (a node's workers) take
    turns on a lock, so one compiles and the others find its result."""
    import mindspore

    include = header_dir()
    if include is None:
        raise Unavailable(f"no oneDNN headers ({DEVEL_HEADER}): pip install --no-deps onednn-devel==2026.1.0, "
                          f"or set {HEADERS_ENV}")
    libdir = Path(mindspore.__file__).parent / "lib"
    digest = hashlib.sha256(SOURCE.read_bytes() + POOL_HEADER.read_bytes() + str(libdir).encode()).hexdigest()[:16]
    out = cache_dir() / f"cpu_conv-{digest}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        try:
            build = subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{include}",
                                    f"-I{SOURCE.parent}", str(SOURCE), "-o", str(partial),
                                    str(libdir / "libdnnl.so.3"), f"-Wl,-rpath,{libdir}", "-lpthread"],
                                   capture_output=True, text=True)
        except FileNotFoundError:
            raise Unavailable("g++ is not installed") from None
        if build.returncode != 0:
            partial.unlink(missing_ok=True)
            last = (build.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"g++ failed on {SOURCE.name}: {last}")
        partial.rename(out)
    return out


def choose(say) -> Optional[str]:
    """The library path when the op is to be used (INCV4_CPU_CONV unset or auto, and it builds), else None; says
    which convolutions run, in one line."""
    choice = os.environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "mindspore"):
        from incv4.trainer.recipe import RecipeError  # the trainer's one-line usage error (exit 2)

        raise RecipeError(f"environment {CHOICE_ENV}={choice!r}: expected auto or mindspore")
    if choice == "mindspore":
        say(f"CPU convolutions: MindSpore's Conv2D ({CHOICE_ENV}=mindspore)")
        return None
    try:
        path = str(library())
    except Unavailable as why:
        say(f"CPU convolutions: MindSpore's Conv2D (incv4's faster oneDNN op is unavailable: {why})")
        return None
    say("CPU convolutions: incv4's oneDNN op in blocked layouts (trainer/cpu_conv.py)")
    return path


def _pads(kernel, stride, pad_mode, padding):
    """(top, bottom, left, right) as nn.Conv2d pads; 'same' only at stride 1 (all of InceptionV4's are)."""
    if pad_mode == "valid":
        return (0, 0, 0, 0)
    if pad_mode == "pad":
        return (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    if stride != (1, 1):
        raise ValueError("cpu_conv: pad_mode 'same' is only implemented for stride 1")
    kh, kw = kernel
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)


def _conv_cell(conv, lib: str, weight_decay: float = 0.0):
    import numpy as np
    from mindspore import Tensor, nn, ops

    class OneDnnConv2d(nn.Cell):
        """nn.Conv2d (no bias, group 1, dilation 1) computed by cpu_conv.cc. Holds nn.Conv2d's `weight`. Its weight
        gradient includes `weight_decay * weight` (swap() explains when)."""

        def __init__(self):
            super().__init__()
            kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
            if conv.has_bias or conv.group != 1 or tuple(conv.dilation) != (1, 1):
                raise ValueError("cpu_conv: only bias-free, ungrouped, undilated convolutions")
            top, bottom, left, right = _pads(kernel, stride, conv.pad_mode, conv.padding)
            self.weight = conv.weight  # the same Parameter: its value, and its name once swap() restores it
            self.geom = Tensor(np.array([stride[0], stride[1], top, left], np.int32))  # cpu_conv.cc's `geom`
            self.decay = Tensor(np.array([weight_decay], np.float32))  # cpu_conv.cc's `decay`

            def y_shape(x, w, _geom, _decay):
                return [x[0], w[0], (x[2] + top + bottom - w[2]) // stride[0] + 1,
                        (x[3] + left + right - w[3]) // stride[1] + 1]

            backward = ops.Custom(f"{lib}:ConvBackward", out_shape=lambda dy, x, w, g, d: (x, w),
                                  out_dtype=lambda dy, x, w, g, d: (x, w), func_type="aot")

            def bprop(x, w, geom, decay, _out, dout):
                dx, dw = backward(dout, x, w, geom, decay)
                return dx, dw, ops.zeros_like(geom), ops.zeros_like(decay)

            self.forward = ops.Custom(f"{lib}:ConvForward", out_shape=y_shape, out_dtype=lambda x, w, g, d: x,
                                      func_type="aot", bprop=bprop)

        def construct(self, x):
            return self.forward(x, self.weight, self.geom, self.decay)

    return OneDnnConv2d()


def swap(network, lib: str, weight_decay: float = 0.0) -> list:
    """Replace every BasicConv2d's nn.Conv2d in `network` with the op, in place, keeping each weight Parameter and
    its name. Each op adds `weight_decay * weight` to its weight's gradient (one pass inside its backward kernel
    instead of MindSpore's Mul and AddN per weight); the caller then leaves those weights out of the optimizer's
    decay (optim.gradient_weight_decay gives the value that keeps the update the same). Returns the names of the
    weights swapped (149 for InceptionV4)."""
    from incv4.trainer import model

    names = {id(p): p.name for p in network.get_parameters()}
    blocks = [cell for _, cell in network.cells_and_names() if isinstance(cell, model.BasicConv2d)]
    for block in blocks:
        block.conv = _conv_cell(block.conv, lib, weight_decay)
    for parameter in network.get_parameters():  # attaching a cell re-prefixes its parameters' names
        parameter.name = names[id(parameter)]
    return [block.conv.weight.name for block in blocks]
