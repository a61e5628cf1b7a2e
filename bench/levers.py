"""Speed levers for the train step, tried on the incv4 side (`python -m bench.levers [--size 75] [--quick]
[LEVER ...]`): each lever is a worker variant measured against the unchanged incv4 side in the same run,
alternating round by round (as case 1). Results go to bench/.cache/levers-<size>.json and stdout; the conclusions
are written up by hand in bench/FINDINGS.md."""
from __future__ import annotations

import argparse
import json
import sys

from bench.__main__ import heavy_lock
from bench.case_train_step import measure
from bench.common import CACHE_DIR, median

LEVERS = {
    "threads2": ("incv4", ["--threads", "2"]),            # CPU kernel threads = cores (default 25)
    "threads1": ("incv4", ["--threads", "1"]),
    "threads2_dispatch1": ("incv4", ["--threads", "2", "--dispatch-threads", "1"]),
    "jit_O1": ("incv4", ["--jit-level", "O1"]),
    "jit_O0": ("incv4", ["--jit-level", "O0"]),
    "plain_step": ("incv4", ["--step", "plain"]),       # MindSpore's TrainOneStepCell instead of train.py's step
    "v_trainer": ("incv4", ["--step", "v:trainer"]),     # bench/step_variants.py copies of the train step
    "v_loss_check": ("incv4", ["--step", "v:loss_check"]),
    "v_no_branch": ("incv4", ["--step", "v:no_branch"]),
    "v_no_check": ("incv4", ["--step", "v:no_check"]),
    "graph_kernel": ("incv4", ["--graph-kernel"]),        # MindSpore's graph kernel fusion (AKG)
    "fused_1x1": ("incv4", ["--model", "fused_1x1"]),  # sibling 1x1 convs as one conv (bench/experiments)
    "split_graphs": ("incv4", ["--step", "split"]),  # fwd+bwd and optimizer as two graphs (bench/experiments)
    "lean_blocks": ("incv4", ["--model", "lean_blocks"]),  # BasicConv2d calls its primitives (bench/experiments)
    "decay_in_kernel": ("incv4", ["--optimizer", "decay_in_kernel"]),  # weight decay inside ops.SGD
    "unrolled_momentum": ("incv4", ["--optimizer", "unrolled"]),  # nn.Momentum's update as one unrolled loop
    # MindSpore's Conv2D instead of incv4's CPU convolution op (trainer/cpu_conv.py): capped at AVX2, as the trainer
    # runs it when the op is unavailable, and with no ISA cap
    "mindspore_conv": ("incv4", ["--cpu-conv", "mindspore"]),
    "isa_default": ("incv4", ["--cpu-conv", "mindspore", "--onednn-isa", "default"]),
    "mindcv": ("mindcv", []),
    "mindcv_isa_default": ("mindcv", ["--onednn-isa", "default"]),
    "mindcv_threads2": ("mindcv", ["--threads", "2"]),
    "timm": ("timm", []),
}


PIPELINE_LEVERS = ("incv4", "incv4-float", "mindcv")


def pipeline_levers(rounds: int, workers_list=(1, 2)) -> dict:
    """Input-pipeline variants, alternating, one process per measurement (see pipeline_worker.py)."""
    from bench.case_pipeline import make_jpegs
    from bench.common import REF_PYTHON, incv4_python, run_json

    data_dir = make_jpegs(CACHE_DIR / "jpegs", 40)
    res: dict = {}
    for workers in workers_list:
        for r in range(rounds):
            for side in PIPELINE_LEVERS:
                python = str(REF_PYTHON) if side == "mindcv" else incv4_python()
                rec = run_json(python, "bench.pipeline_worker", ["--side", side, "--data-dir", str(data_dir),
                               "--workers", str(workers), "--epochs", "2"],
                               CACHE_DIR / "logs" / "pipeline_lever.log", timeout=900)
                res.setdefault(f"{side} w{workers}", []).append(rec)
    print(f"{'variant':32} {'img/s':>8} {'img/CPU-s':>10}")
    for name, recs in res.items():
        print(f"{name:32} {median([x['images_per_s'] for x in recs]):8.1f} "
              f"{median([x['images_per_cpu_s'] for x in recs]):10.1f}")
    out = CACHE_DIR / "levers-pipeline.json"
    out.write_text(json.dumps(res, indent=1))
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("levers", nargs="*", help="default: threads2 plain_step (none with --compile)")
    parser.add_argument("--size", type=int, default=75)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="steps per side per round")
    parser.add_argument("--pipeline", action="store_true", help="the input-pipeline levers instead")
    parser.add_argument("--compile", action="store_true",
                        help="compile time only: incv4, the levers given and MindCV in fresh processes, "
                             "alternating, --rounds each")
    parser.add_argument("--conv-library-file", metavar="SO",
                        help="adds the variant prebuilt_conv: the incv4 side with this prebuilt cpu_conv library "
                             "(e.g. built from an earlier trainer/cpu_conv.cc) instead of the current one")
    parser.add_argument("--no-lock", action="store_true", help="the caller holds /tmp/incv4-heavy.lock")
    args = parser.parse_args(argv)
    for name in args.levers:
        if name not in LEVERS:
            parser.error(f"unknown lever {name!r}; choose from {', '.join(LEVERS)}")
    if args.pipeline:
        with heavy_lock(not args.no_lock):
            pipeline_levers(args.rounds)
        return 0
    if args.compile:
        from bench.case_train_step import measure_compile

        with heavy_lock(not args.no_lock):
            variants = {"incv4": ("incv4", [])}
            variants.update({name: LEVERS[name] for name in args.levers})
            variants.setdefault("mindcv", LEVERS["mindcv"])
            samples = measure_compile(args.size, args.batch, args.rounds, log=lambda m: print(m, flush=True),
                                      variants=variants)
        for side, values in samples.items():
            done = [v for v in values if v is not None]  # None: that sample failed (its log says why)
            shown = f"{median(done):.1f}" if done else "-"
            rounded = [None if v is None else round(v, 1) for v in values]
            print(f"{side:8} compile s median {shown}  samples {rounded}")
        return 0
    variants = {"incv4": ("incv4", [])}
    for name in args.levers or ([] if args.conv_library_file else ["threads2", "plain_step"]):
        variants[name] = LEVERS[name]
    if args.conv_library_file:
        variants["prebuilt_conv"] = ("incv4", ["--conv-library-file", args.conv_library_file])
    with heavy_lock(not args.no_lock):
        res = measure(args.size, args.batch, args.rounds, args.steps, variants=variants,
                      log=lambda m: print(m, flush=True))
    base = median(res["incv4"].get("step_s", [])) if "incv4" in res else None
    print(f"{'variant':22} {'ms/step':>9} {'vs incv4':>9} {'compile s':>10} {'RSS MB':>8}")
    for name, r in res.items():
        if "error" in r:
            print(f"{name:22} error: {r['error']}")
            continue
        ms = median(r["step_s"])
        print(f"{name:22} {1000 * ms:9.0f} {base / ms if base else float('nan'):9.2f} {r['compile_s']:10.1f} "
              f"{r.get('peak_rss_mb', 0):8.0f}")
    out = CACHE_DIR / f"levers-{args.size}.json"
    previous = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(previous + [{"args": vars(args), "results": res}], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
