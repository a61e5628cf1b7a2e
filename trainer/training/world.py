"""This process's place in the run: its rank and the world size, the device it runs on, MindSpore's context and,
with several ranks, the collectives (data parallel, gradients averaged, as MindCV)."""
from __future__ import annotations

import os
from typing import Callable

from incv4.trainer.training.console import log, quiet


def world_from_env() -> tuple[int, int]:
    """(rank, world size) as the launcher (or msrun) sets them; (0, 1) for a lone process."""
    size = int(os.environ.get("RANK_SIZE", os.environ.get("MS_WORKER_NUM", "1")) or 1)
    rank = int(os.environ.get("RANK_ID", os.environ.get("MS_NODE_ID", "0")) or 0) if size > 1 else 0
    return rank, size


def choose_device(wanted: str, say: Callable[[str], None] = log) -> str:
    """The recipe's device_target if this MindSpore build has it, else CPU (with a log line)."""
    if wanted == "CPU":
        return "CPU"
    import mindspore as ms

    try:
        available = bool(ms.hal.is_available(wanted))
    except Exception:  # an old or partial build: treat as absent
        available = False
    if not available:
        say(f"device_target {wanted}: this MindSpore build has no {wanted} backend; running on CPU")
        return "CPU"
    return wanted


def set_context(recipe, device: str, say: Callable[[str], None]) -> None:
    """MindSpore's context for the recipe's mode on `device`, with its jit_level where MindSpore applies it."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE if recipe.mode == 0 else ms.PYNATIVE_MODE, device_target=device)
    apply_jit_level(recipe.jit_level, recipe.mode, device, say)


def apply_jit_level(level: str, mode: int, device: str, say: Callable[[str], None]) -> bool:
    """MindCV's train.py and validate.py (mindspore-lab/mindcv 853084f, "use GE backend for ms2.3") set
    jit_config={"jit_level": "O2"} in graph mode; incv4 takes the level from the recipe. It selects how Ascend runs
    a compiled graph (O0/O1 kernel by kernel, O2 the whole graph sunk through GE): applied in graph mode on Ascend,
    a logged no-op elsewhere. Returns whether it was applied."""
    if mode != 0:
        say(f"jit_level {level}: not applied in PyNative mode (MindSpore's jit_config is for graph mode)")
        return False
    if device != "Ascend":
        say(f"jit_level {level}: not applied on {device} (it selects how Ascend runs a graph); "
            f"{device} compiles the graph as MindSpore does by default")
        return False
    import mindspore as ms

    ms.set_context(jit_config={"jit_level": level})
    say(f"jit_level {level}: graph mode with jit_config jit_level {level}")
    return True


def usable_amp_level(key: str, level: str, device: str, say: Callable[[str], None]) -> str:
    """The recipe's amp level (`amp_level`, `val_amp_level`) where the device has float16; O0 on the CPU, said in
    one line."""
    if device == "CPU" and level != "O0":
        say(f"{key} {level}: the CPU has no float16 kernels for this network; using O0 (float32)")
        return "O0"
    return level


def set_up_device(recipe, rank: int, rank_size: int) -> tuple[str, int, int]:
    """Choose the device, set MindSpore's context and join the other ranks. Returns (device, rank, world size) as
    the collectives see them."""
    import mindspore as ms

    from incv4.trainer import cpu_backend
    from incv4.trainer.launcher.cpu_binding import hand_to_mindspore
    from incv4.trainer.launcher.environment import apply_worker_settings

    device = choose_device(recipe.device_target)
    say = log if rank == 0 else quiet
    cpu_backend.prepare(device, say)  # before any kernel
    set_context(recipe, device, say)
    apply_worker_settings()  # under the launcher: the per-worker CPU thread count, so N workers share the cores
    if device == "Ascend" and "DEVICE_ID" in os.environ:
        ms.set_context(device_id=int(os.environ["DEVICE_ID"]))
    hand_to_mindspore(log)  # --bind-core: after the device, before the first graph (MindSpore's order); every rank
    if rank_size > 1:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, rank_size = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=rank_size)
    return device, rank, rank_size
