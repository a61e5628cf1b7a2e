"""Would MindSpore's CPU convolutions be faster in oneDNN's blocked layouts? `python -m
bench.experiments.conv_layouts --size 75 [--batch 8] [--rounds 3]`.

MindSpore's CPU Conv2D / Conv2DBackpropInput / Conv2DBackpropFilter kernels hand oneDNN plain NCHW memory, and
oneDNN answers with its im2col + GEMM implementation ("x64:gemm:jit" in ONEDNN_VERBOSE); PyTorch lets oneDNN
choose the layout and gets its direct JIT kernels on blocked memory ("jit:avx2", "jit_1x1:avx2") plus reorders.
Convolutions are ~71 % of incv4's CPU step (bench/FINDINGS.md, session 6 profile), so this is the one place a
1.2x step gain over MindCV (which calls the same kernels) could come from, e.g. through a custom op.

This measures the ceiling of that idea before anyone writes the op:
1. the convolutions of one incv4 train step at --size (oneDNN's own problem descriptors, read from
   ONEDNN_VERBOSE while bench/train_worker.py runs its first step);
2. conv_layouts.cpp, built with g++ against MindSpore's own libdnnl.so.3 (headers: the oneDNN v3 headers
   PyTorch ships in bench/.venv, made by `python -m bench`), times each one (forward, backward data, backward
   weights) plain vs blocked; blocked includes the reorders from and to NCHW a MindSpore op would need, and
   "no reorders" is the same blocked kernels alone (a network whose every op works on blocked memory).
Needs g++ and an otherwise idle machine. Results: stdout and bench/.cache/conv_layouts-<size>.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench.common import CACHE_DIR, REF_VENV, REPO_ROOT, worker_env

SOURCE = Path(__file__).with_suffix(".cpp")
_CONV_LINE = re.compile(r"^onednn_verbose,.*,exec,cpu,convolution,[^,]*,forward_training,.*,(mb\d+_\S+?),[\d.]+$")


def step_convolutions(size: int, batch: int) -> list:
    """oneDNN problem descriptors of every forward convolution in one incv4 train step, in execution order."""
    env = worker_env({"ONEDNN_VERBOSE": "1"})
    proc = subprocess.run([sys.executable, "-m", "bench.train_worker", "--side", "incv4", "--size", str(size),
                           "--batch", str(batch)], input="compile\nquit\n", capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"conv_layouts: the train worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    convs = [m.group(1) for line in proc.stdout.splitlines() if (m := _CONV_LINE.match(line))]
    if not convs:
        raise SystemExit("conv_layouts: no oneDNN convolution in the worker's output (ONEDNN_VERBOSE ignored?)")
    return convs


def build() -> Path:
    import mindspore

    libdir = Path(mindspore.__file__).parent / "lib"
    headers = glob.glob(str(REF_VENV / "lib" / "python*" / "site-packages" / "torch" / "include"))
    if not headers:
        raise SystemExit(f"conv_layouts: no oneDNN headers under {REF_VENV} (run `python -m bench` once to make it)")
    binary = CACHE_DIR / "conv_layouts"
    binary.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["g++", "-O2", "-std=c++17", f"-I{headers[0]}", f"-I{REPO_ROOT / 'trainer'}", str(SOURCE), "-o", str(binary),
                    str(libdir / "libdnnl.so.3"), f"-Wl,-rpath,{libdir}", "-lpthread"], check=True)
    return binary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=75)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/blocked rounds per convolution")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    binary = build()
    convs = step_convolutions(args.size, args.batch)
    conv_file = CACHE_DIR / f"conv_layouts-{args.size}.txt"
    conv_file.write_text("\n".join(convs) + "\n")
    out = subprocess.run([str(binary), str(conv_file), str(args.threads), str(args.rounds)], check=True,
                         capture_output=True, text=True).stdout
    lines = [line.split() for line in out.splitlines()]
    # "conv mb8 ic3 oc32 k3x3 s2 in75x75 plain_ms 1.2 blocked_ms 1.5" and a closing "total convs N plain_ms ..."
    per_conv = [{"conv": " ".join(w[1:7]), **{key: float(value) for key, value in zip(w[7::2], w[8::2])}}
                for w in lines if w[0] == "conv"]
    summary = lines[-1]
    total = {key: float(value) for key, value in zip(summary[3::2], summary[4::2])}
    faster = sum(1 for r in per_conv if r["blocked_ms"] < r["plain_ms"])
    result = {"size": args.size, "batch": args.batch, "threads": args.threads, "convolutions": len(per_conv),
              "blocked_faster_for": faster, **total,
              "plain_over_blocked": total["plain_ms"] / total["blocked_ms"],
              "plain_over_best_of_each": total["plain_ms"] / total["best_of_each_ms"],
              "plain_over_no_reorders": total["plain_ms"] / total["no_reorders_ms"], "per_conv": per_conv}
    (CACHE_DIR / f"conv_layouts-{args.size}.json").write_text(json.dumps(result, indent=1))
    print(f"{len(per_conv)} convolutions of one {args.size} px batch-{args.batch} step, fwd + bwd, {args.threads} "
          f"threads: plain NCHW {total['plain_ms']:.1f} ms, blocked (with reorders) {total['blocked_ms']:.1f} ms "
          f"({result['plain_over_blocked']:.2f}x), best of each {total['best_of_each_ms']:.1f} ms "
          f"({result['plain_over_best_of_each']:.2f}x), blocked without reorders {total['no_reorders_ms']:.1f} ms "
          f"({result['plain_over_no_reorders']:.2f}x); blocked faster for {faster}/{len(per_conv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
