"""`--bind-core`: each local worker on its own share of the pod's CPUs, as `msrun --bind_core=True` does.

What MindSpore 2.10 does (read in its sources):
- msrun (mindspore/parallel/cluster/process_entity/_bind.py `_generate_bind_context`, `_generate_bind_core_strategy`;
  _utils.py `_generate_cmd`) splits the CPUs of `/sys/fs/cgroup/cpuset/cpuset.cpus` among the local workers (by
  NPU-NUMA affinity where `npu-smi` answers, else in equal contiguous shares, the last taking the remainder:
  mindspore/runtime/thread_bind_core.py `_equal_distribute_cpu_strategy`), starts each worker under
  `taskset -c <share>` and exports the share as MSRUN_CPU_LIST. Without taskset, without that cgroup v1 file, or
  with fewer CPUs than workers it only logs a warning and binds nothing.
- `mindspore.runtime.set_cpu_affinity(True)` (runtime/executor.py) binds threads, not the process: with
  MSRUN_CPU_LIST set it gives that share to MindSpore's main thread (thread_bind_core.py
  `_get_cpu_affinity_strategy`), which is pinned at the first graph run (ccsrc MSBackendBase::BindCoreForMainThread);
  threads that exist by then (the CPU kernel pool, the actor threads) keep every CPU. When the cgroup v1 file is
  missing (cgroup v2) it logs a warning and returns: no error, nothing bound.

So incv4 does both halves of msrun: the launcher starts each worker already bound to its share (as taskset: the
whole process, every thread it will have), split from the launcher's own affinity, which is the pod's cgroup cpuset
under cgroup v1 and v2 alike; each worker then hands the share to MindSpore's set_cpu_affinity where this MindSpore
has it and can bind here, and otherwise says in one line that incv4's share is the binding. With fewer CPUs than
workers (the 8-worker demo on 2 cores) the shares wrap round-robin, one CPU each, and the launcher says so.
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence

# The launcher's share for one worker ("0-3,8"); set only with --bind-core.
CPU_SHARE_ENV = "INCV4_CPU_SHARE"
# msrun's hand-off of a worker's share to set_cpu_affinity (a Python list literal, as msrun writes it).
MSRUN_CPU_LIST_ENV = "MSRUN_CPU_LIST"
# Where set_cpu_affinity reads the available CPUs; without it MindSpore binds nothing (its docstring, item 1).
MINDSPORE_CPUSET = "/sys/fs/cgroup/cpuset/cpuset.cpus"

_handed_to_mindspore = False


def pod_cpus() -> List[int]:
    """The CPUs this process may run on: inside a container, the pod's cgroup cpuset."""
    return sorted(os.sched_getaffinity(0))


def split(cpus: Sequence[int], workers: int) -> List[List[int]]:
    """One contiguous share of `cpus` per local worker. With at least one CPU per worker the shares are disjoint and
    cover `cpus`: msrun's equal distribution, the last worker taking the remainder. With fewer CPUs than workers each
    worker gets one CPU, round-robin (msrun would bind nothing)."""
    cpus = sorted(cpus)
    if not cpus or workers < 1:
        raise ValueError(f"cannot split {len(cpus)} CPUs among {workers} workers")
    if len(cpus) < workers:
        return [[cpus[rank % len(cpus)]] for rank in range(workers)]
    per_worker = len(cpus) // workers
    shares = [cpus[rank * per_worker:(rank + 1) * per_worker] for rank in range(workers)]
    shares[-1] = cpus[(workers - 1) * per_worker:]
    return shares


def describe_plan(cpus: Sequence[int], shares: Sequence[Sequence[int]]) -> str:
    """The launcher's one line about the binding."""
    listed = ", ".join(format_cpus(share) for share in shares)
    if len(cpus) < len(shares):
        return (f"bind-core: {len(cpus)} CPU(s) for {len(shares)} workers: the shares wrap round-robin, one CPU "
                f"each, shared by up to {-(-len(shares) // len(cpus))} workers ({listed})")
    return f"bind-core: each worker on its own share of the {len(cpus)} CPUs this launcher may use ({listed})"


def worker_env(share: Sequence[int]) -> dict:
    """What a worker is told about its share: incv4's variable, and msrun's for set_cpu_affinity."""
    return {CPU_SHARE_ENV: format_cpus(share), MSRUN_CPU_LIST_ENV: str(list(share))}


def bind_process(share: Sequence[int]) -> None:
    """Bind the calling process (in the child, before exec: the whole worker) to `share`, as `taskset -c`. A share
    the kernel refuses (the pod's cpuset shrank since the split) leaves the worker unbound, said in its log (fd 2)."""
    try:
        os.sched_setaffinity(0, share)
    except OSError as err:
        os.write(2, f"bind-core: CPUs {format_cpus(share)} refused ({err.strerror}); this worker is not bound\n"
                    .encode())


def hand_to_mindspore(say: Callable[[str], None]) -> Optional[bool]:
    """In a worker the launcher bound (CPU_SHARE_ENV set), after MindSpore's context is set and before the first
    graph runs: let MindSpore's set_cpu_affinity place its threads in the share, or say in one line why incv4's share
    is the binding. Returns whether MindSpore took it, None when the launcher bound nothing. Once per process:
    MindSpore refuses a second call."""
    global _handed_to_mindspore
    share_text = os.environ.get(CPU_SHARE_ENV)
    if not share_text or _handed_to_mindspore:
        return None
    _handed_to_mindspore = True
    why_not = _mindspore_cannot_bind()
    if why_not is None:
        why_not = _call_set_cpu_affinity(share_text)
    if why_not is None:
        say(f"bind-core: CPUs {share_text}; MindSpore's set_cpu_affinity pins its main thread to them")
        return True
    say(f"bind-core: CPUs {share_text}, bound by incv4's launcher ({why_not})")
    return False


def _mindspore_cannot_bind() -> Optional[str]:
    """Why set_cpu_affinity would bind nothing here, found before calling it (it fails silently), or None."""
    import mindspore as ms

    if not hasattr(getattr(ms, "runtime", None), "set_cpu_affinity"):
        return f"MindSpore {ms.__version__} has no mindspore.runtime.set_cpu_affinity"
    try:
        with open(MINDSPORE_CPUSET, encoding="utf-8") as fh:
            listed = fh.read().strip()
    except OSError:
        listed = ""
    if not listed:
        return (f"MindSpore's set_cpu_affinity binds nothing without {MINDSPORE_CPUSET} (a cgroup v1 file; "
                f"absent under cgroup v2)")
    return None


def _call_set_cpu_affinity(share_text: str) -> Optional[str]:
    import mindspore as ms

    os.environ[MSRUN_CPU_LIST_ENV] = str(parse_cpus(share_text))  # the launcher's share, as msrun hands it over
    try:
        ms.runtime.set_cpu_affinity(True)
    except (RuntimeError, ValueError, TypeError) as err:
        return f"MindSpore's set_cpu_affinity failed: {err}"
    return None


def format_cpus(cpus: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the cpuset list format taskset and the kernel use)."""
    parts, run = [], []
    for cpu in sorted(cpus):
        if run and cpu != run[-1] + 1:
            parts.append(_range(run))
            run = []
        run.append(cpu)
    if run:
        parts.append(_range(run))
    return ",".join(parts)


def _range(run: List[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def parse_cpus(text: str) -> List[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    cpus = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return sorted(cpus)
