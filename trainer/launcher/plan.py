"""What the workers are given: the recipe validated once, the global batch and the lr scaling rule, the worker
command line, and the compile-cache folder for exactly that run. `run_local` is `incv4 train --workers N`: the
launcher on this one machine."""
from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import socket
import sys
from typing import Iterable, Iterator, Optional, Sequence

from incv4.trainer import contract
from incv4.trainer.contract import DEFAULT_LOCAL_WORKERS
from incv4.trainer.launcher.topology import Topology
from incv4.trainer.metrics.exporter import LOCAL_ADDR  # a local run serves /metrics to this machine only
from incv4.trainer.options import CLUSTER_TIMEOUT

# What every worker process runs (`python -m ...`).
WORKER_MODULE = "incv4.trainer.training.worker"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _say(text: str) -> None:
    print(f"[launch] {text}", file=sys.stderr, flush=True)


def plan_worker_args(recipe_path: Optional[str], overrides: Iterable[str], data_dir: Optional[str],
                     world_size: int, scale_lr: bool, extra_args: Iterable[str] = (),
                     say=_say, check_images: bool = False) -> tuple[list, object]:
    """Validate the recipe once (one-line RecipeError before anything starts), log the global batch, and build
    the arguments every worker gets. Returns (args, recipe). `check_images`: also check the splits' images
    (`check_run_data`), for callers that have not already (`incv4 launch`; `incv4 train` checks them itself)."""
    from incv4.trainer import recipe as recipe_lib

    overrides = list(overrides)
    recipe = recipe_lib.load(recipe_path, overrides, data_dir=data_dir)
    recipe_lib.check_world_size(recipe, world_size)
    if check_images:
        from incv4.trainer.data.check import check_run_data

        check_run_data(recipe)
    else:
        recipe_lib.require_data_dir(recipe, [recipe.train_split])
    say(f"global batch {recipe.batch_size * world_size} = batch_size {recipe.batch_size} x {world_size} workers")
    # more than one worker is data parallel: the workers' recipe says so (one worker keeps what the recipe says)
    extra_sets = (["distribute=True"] if world_size > 1 else []) + _lr_sets(recipe, world_size, scale_lr, say)
    args: list = []
    if recipe_path:
        args += ["--config", os.path.abspath(recipe_path)]
    if data_dir:
        args += ["--data-dir", os.path.abspath(data_dir)]
    for text in overrides + extra_sets:
        args += ["--set", text]
    return args + list(extra_args), recipe


def _lr_sets(recipe, world_size: int, scale_lr: bool, say) -> list:
    """The `--set` overrides of the linear scaling rule when the global batch is not the recipe's reference."""
    global_batch = recipe.batch_size * world_size
    reference = recipe.reference_global_batch
    if global_batch == reference:
        return []
    if not scale_lr:
        say(f"note: the recipe's reference global batch is {reference} (8 cards x {recipe.batch_size}); "
            f"lr {recipe.lr:g} is unchanged (give --scale-lr to scale it linearly to {global_batch})")
        return []
    scaled = recipe.lr * global_batch / reference
    say(f"--scale-lr: lr {recipe.lr:g} -> {scaled:g} (x {global_batch}/{reference}, linear scaling rule)")
    return [f"lr={scaled!r}"] + ([f"min_lr={scaled!r}"] if recipe.min_lr > scaled else [])


def compile_cache_dir(recipe, world_size: int, worker_args: Sequence[str]) -> str:
    """<ckpt_save_dir>/compile_cache/<key>: the key covers everything that shapes the compiled graph (the trainer's
    code, MindSpore's version, the final recipe, the world size, the worker flags), so a cache is only ever reused
    by an identical restart, never by a changed network or recipe (MindSpore itself checks only the entry
    script's imports outside site-packages)."""
    from importlib import metadata

    digest = hashlib.sha256()
    trainer_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the whole incv4.trainer package
    for source in sorted(pathlib.Path(trainer_dir).rglob("*.py")):
        digest.update(str(source.relative_to(trainer_dir)).encode() + source.read_bytes())
    try:
        digest.update(metadata.version("mindspore").encode())
    except metadata.PackageNotFoundError:
        pass
    digest.update(recipe.to_yaml().encode())
    digest.update(f"{world_size}\0{chr(0).join(worker_args)}".encode())
    return os.path.join(os.path.abspath(recipe.ckpt_save_dir), "compile_cache", digest.hexdigest()[:16])


@contextlib.contextmanager
def shared_data_listing(recipe) -> Iterator[None]:
    """While the workers run, their environment (the supervisor copies this process's) names this node's listing of
    the run's splits, made here once, so no worker scans the tree itself (trainer/data/folder.py); if this process
    checked the images, the workers do not check them again. Restored afterwards: `incv4 train` and tests run
    this in a longer-lived process."""
    from incv4.trainer.data.check import shared_listings_env
    from incv4.trainer.data.folder import LISTINGS_ENV

    value = shared_listings_env(recipe)
    before = os.environ.get(LISTINGS_ENV)
    if value is not None:
        os.environ[LISTINGS_ENV] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LISTINGS_ENV, None)
        else:
            os.environ[LISTINGS_ENV] = before


def worker_command(args: Sequence[str], worker_script: Optional[str] = None) -> list:
    head = [sys.executable, worker_script] if worker_script else [sys.executable, "-m", WORKER_MODULE]
    return head + list(args)


def run_local(config: Optional[str], overrides: Iterable[str] = (), data_dir: Optional[str] = None,
              workers: int = DEFAULT_LOCAL_WORKERS, metrics_port: int = contract.METRICS_PORT, scale_lr: bool = False,
              *extra_args: str, log_dir: Optional[str] = None, cluster_timeout: int = CLUSTER_TIMEOUT,
              grace_period: float = contract.LAUNCH_GRACE_PERIOD, threads_per_worker: int = 0,
              worker_script: Optional[str] = None, compile_cache: bool = True, max_restarts: int = 0,
              bind_core: bool = False) -> int:
    """`incv4 train --workers N`: the launcher on one node (127.0.0.1, a free port). Raises RecipeError (one line)
    for a bad recipe or data dir before anything starts; otherwise returns the launcher's exit code."""
    from incv4.trainer.launcher.supervisor import run_node
    topology = Topology(nodes=1, node_rank=0, master_addr="127.0.0.1", master_port=free_port(),
                        local_workers=workers)
    args, recipe = plan_worker_args(config, overrides, data_dir, topology.world_size, scale_lr, extra_args)
    cache = compile_cache_dir(recipe, topology.world_size, args) if compile_cache else None
    with shared_data_listing(recipe):
        return run_node(topology, worker_command(args, worker_script),
                        log_dir or os.path.join(recipe.ckpt_save_dir, "logs"), cluster_timeout=cluster_timeout,
                        grace_period=grace_period, metrics_port=metrics_port, threads_per_worker=threads_per_worker,
                        compile_cache=cache, metrics_addr=LOCAL_ADDR, max_restarts=max_restarts,
                        bind_core=bind_core)
