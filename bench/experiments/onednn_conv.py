"""Lever: every convolution of incv4's InceptionV4 as a MindSpore custom op running oneDNN in blocked layouts
(bench/experiments/onednn_conv.cc), the process left without the oneDNN ISA cap, so an AVX-512 CPU runs
oneDNN's AVX-512 direct kernels (`python -m bench.levers onednn_conv`).

Why (bench/FINDINGS.md, session 8): MindSpore's own CPU convolutions hand oneDNN plain NCHW memory, which is fast
only under the AVX2 cap incv4's trainer sets (trainer/cpu_backend.py); conv_layouts put one 75 px step's
convolutions at 469.5 ms that way and 265.2 ms in AVX-512 blocked layouts with the reorders from and to NCHW this
op does. The forward and both backward passes are AOT kernels (`ops.Custom(func_type="aot")`, the backward ones
as the forward op's bprop); parameters keep their names (`...conv.weight`), so checkpoints are unchanged.

Needs g++ and oneDNN v3's C++ headers (`make setup-dev` installs PyPI's onednn-devel, headers only); MindSpore's
wheel ships the library, not the headers. The shared library is built once per source version into bench/.cache.
"""
from __future__ import annotations

import glob
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from bench.common import CACHE_DIR, REF_VENV
from incv4.trainer import model

DEVEL_HEADERS = "oneapi/dnnl/dnnl.hpp"
SOURCES = [Path(__file__).with_name("onednn_conv.cc"), Path(__file__).with_name("onednn_pool.h")]


def header_dirs() -> list:
    """Where oneDNN v3's C++ headers are: onednn-devel's in this venv (`make setup-dev`), else PyTorch's copy in
    bench/.venv. MindSpore's libdnnl.so.3 exports every function the kernels call from either."""
    found = [d for d in [str(Path(sys.prefix) / "include")] if (Path(d) / DEVEL_HEADERS).exists()]
    return found + glob.glob(str(REF_VENV / "lib" / "python*" / "site-packages" / "torch" / "include"))


def library() -> Path:
    """Build (once per source version) and return the kernels' shared library."""
    import mindspore

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:12]
    out = CACHE_DIR / f"libincv4_onednn_conv-{digest}.so"
    if out.exists():
        return out
    libdir = Path(mindspore.__file__).parent / "lib"
    headers = header_dirs()
    if not headers:
        raise SystemExit(f"onednn_conv: no oneDNN headers: `make setup-dev` installs them ({DEVEL_HEADERS})")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tmp")
    subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{headers[0]}", str(SOURCES[0]),
                    "-o", str(partial), str(libdir / "libdnnl.so.3"), f"-Wl,-rpath,{libdir}", "-lpthread"],
                   check=True)
    partial.rename(out)
    return out


def _pads(kernel, stride, pad_mode, padding):
    """(top, bottom, left, right) as nn.Conv2d pads; 'same' only at stride 1 (all of InceptionV4's are)."""
    if pad_mode == "valid":
        return (0, 0, 0, 0)
    if pad_mode == "pad":
        return (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    if stride != (1, 1):
        raise ValueError("onednn_conv: pad_mode 'same' is only implemented for stride 1")
    (kh, kw) = kernel
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)


class OneDnnConv2d(nn.Cell):
    """nn.Conv2d (no bias, group 1, dilation 1) computed by the AOT kernels. Holds `weight` as nn.Conv2d does."""

    def __init__(self, conv: nn.Conv2d, lib: str):
        super().__init__()
        kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
        if conv.has_bias or conv.group != 1 or tuple(conv.dilation) != (1, 1):
            raise ValueError("onednn_conv: only bias-free, ungrouped, undilated convolutions")
        top, bottom, left, right = _pads(kernel, stride, conv.pad_mode, conv.padding)
        self.weight = conv.weight  # the same Parameter: name and initial value unchanged
        self.geom = Tensor(np.array([stride[0], stride[1], top, left], np.int32))

        def y_shape(x, w, _geom):
            return [x[0], w[0], (x[2] + top + bottom - w[2]) // stride[0] + 1,
                    (x[3] + left + right - w[3]) // stride[1] + 1]

        backward_data = ops.Custom(f"{lib}:ConvBackwardData", out_shape=lambda dy, w, g, x: x,
                                   out_dtype=lambda dy, w, g, x: x, func_type="aot")
        backward_weights = ops.Custom(f"{lib}:ConvBackwardWeights", out_shape=lambda x, dy, w, g: w,
                                      out_dtype=lambda x, dy, w, g: w, func_type="aot")

        def bprop(x, w, geom, _out, dout):
            return backward_data(dout, w, geom, x), backward_weights(x, dout, w, geom), ops.zeros_like(geom)

        self.forward = ops.Custom(f"{lib}:ConvForward", out_shape=y_shape, out_dtype=lambda x, w, g: x,
                                  func_type="aot", bprop=bprop)

    def construct(self, x):
        return self.forward(x, self.weight, self.geom)


def inception_v4(**kwargs):
    """incv4.trainer.model.inception_v4 with every BasicConv2d's convolution an OneDnnConv2d (swapped inside
    BasicConv2d's constructor, before the network names its parameters; the model module looks BasicConv2d up by
    name while it builds, and the original is put back afterwards)."""
    lib = str(library())

    class OneDnnBasicConv2d(model.BasicConv2d):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.conv = OneDnnConv2d(self.conv, lib)

    original = model.BasicConv2d
    model.BasicConv2d = OneDnnBasicConv2d
    try:
        return model.inception_v4(**kwargs)
    finally:
        model.BasicConv2d = original
