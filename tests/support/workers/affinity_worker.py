"""A worker for the --bind-core tests: reports, from inside the worker, the CPUs it may run on.

Run: python affinity_worker.py OUT_DIR [--mindspore] [--no-cgroup-v1]
Writes OUT_DIR/affinity_<RANK_ID or 0>.json with `process` (os.sched_getaffinity(0) at start). With --mindspore it
then does what the trainer's worker does (trainer/training/world.py): MindSpore's context, then
`cpu_binding.hand_to_mindspore`, and runs one small graph (MindSpore pins its main thread at the first graph run);
it adds `outcome` (what hand_to_mindspore returned), `main` (the main thread's CPUs after the graph) and `threads`
(each thread name's CPUs). --no-cgroup-v1 makes the worker look for MindSpore's cgroup v1 cpuset file where there is
none, as on a cgroup v2 node."""
from __future__ import annotations

import json
import os
import sys


def _threads() -> dict:
    """{thread name: sorted CPUs} over this process's threads (the widest set when several share a name)."""
    out: dict = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as fh:
                name = fh.read().strip()
            cpus = os.sched_getaffinity(int(tid))
        except OSError:
            continue  # the thread ended meanwhile
        out[name] = sorted(set(out.get(name, [])) | cpus)
    return out


def _with_mindspore(report: dict, pretend_cgroup_v2: bool) -> None:
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from incv4.trainer.launcher import cpu_binding

    if pretend_cgroup_v2:
        cpu_binding.MINDSPORE_CPUSET = "/nonexistent/cgroup-v2/cpuset.cpus"
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    lines: list = []
    report["outcome"] = cpu_binding.hand_to_mindspore(lines.append)
    report["lines"] = lines
    nn.Dense(4, 2)(ms.Tensor(np.ones((1, 4), np.float32)))  # the first graph run
    report["main"] = sorted(os.sched_getaffinity(0))
    report["threads"] = _threads()


def main(argv) -> int:
    out = argv[0]
    report = {"process": sorted(os.sched_getaffinity(0)), "share_env": os.environ.get("INCV4_CPU_SHARE"),
              "msrun_cpu_list": os.environ.get("MSRUN_CPU_LIST")}
    if "--mindspore" in argv:
        _with_mindspore(report, "--no-cgroup-v1" in argv)
    path = os.path.join(out, f"affinity_{os.environ.get('RANK_ID', '0')}.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
