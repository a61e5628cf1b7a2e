# EXPERIMENT (not used by incv4): where the single-process compile time goes, and one lever that was not one.
"""`PYTHONPATH=. python bench/experiments/compile_profile.py [base|combine] [--profile]`

Builds the bench's incv4 train step (75 px, batch 8, as bench/train_worker.py) and times its first call (the graph
compile) and one more step. `--profile` turns on MindSpore's own compile profile (compile_config.COMPILE_PROFILE:
a per-pass table on stdout). `combine` registers the model's block classes with MindSpore's cell_attr_register,
so blocks built with the same arguments share one func graph before inlining (COMBINE_LIKE_GRAPHS).

Measured (session 4, 2026-11-30, 2 cores): the compile is the front end's: of 28.7 s, type inference 5.9 s,
the optimizer passes 18.2 s (opt_a 16.6 s, of it renormalize 6.8 s and the a_1/a_2/a_3 substitution rounds
~5 s), task emit 4.0 s. Every pass scales with the number of graph nodes, which MindCV's graph has as well.
`combine` vs `base`, alternating: 31.3 / 28.4 s vs 26.7 / 29.7 s: no gain (the blocks are inlined before the
expensive passes run anyway)."""
from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    variant = sys.argv[1] if len(sys.argv) > 1 else "base"
    if variant == "combine":
        from mindspore._extends import cell_attr_register

        from incv4.trainer import model

        for name in ("BasicConv2d", "Stem", "InceptionA", "InceptionB", "InceptionC", "ReductionA", "ReductionB"):
            cls = getattr(model, name)
            cls.__init__ = cell_attr_register(cls.__init__)
    if "--profile" in sys.argv:
        from mindspore.graph._parse import compile_config

        compile_config.COMPILE_PROFILE = "1"
    from bench import train_worker

    args = argparse.Namespace(side="incv4", size=75, batch=8, jit_level="", threads=0, compile_cache="",
                              dispatch_threads=0, step="trainer", model="incv4")
    one_step, _ = train_worker.build(args)
    started = time.perf_counter()
    first_loss = one_step()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    second_loss = one_step()
    print(f"RESULT {variant} compile {compile_s:.1f} s, step {time.perf_counter() - started:.2f} s, "
          f"losses {first_loss} {second_loss}")


if __name__ == "__main__":
    main()
