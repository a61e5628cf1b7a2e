"""Where a run starts: the newest checkpoint that loads (weights, BatchNorm statistics, optimizer state and the lr
schedule's position, restored into the train step), or the beginning. A fresh start (--no-resume) first moves the
previous run's checkpoints aside, so a later resume never mixes two runs."""
from __future__ import annotations

from typing import Callable

from incv4.trainer.checkpoint import store
from incv4.trainer.recipe import RecipeError


def starting_position(directory: str, train_step, rank: int, resume: bool, total_steps: int,
                      say: Callable[[str], None]) -> store.Position:
    if resume:
        if rank == 0:
            store.remove_stale_temporaries(directory)
        loaded = store.load_newest(directory, log=say)
        if loaded is not None:
            restore(train_step, loaded)
            position = loaded.position
            say(f"resuming from {loaded.path}: epoch {position.epoch}, step {position.global_step}/{total_steps}")
            return position
    elif rank == 0:
        moved = store.set_aside(directory)
        if moved:
            say(f"--no-resume: starting fresh; the previous run's checkpoints moved to {moved}")
    return store.Position()


def restore(train_step, loaded: store.Loaded) -> None:
    """Load a checkpoint into the train step; one that was written for another network is a RecipeError."""
    import mindspore as ms

    mismatched = [n for n, p in train_step.parameters_and_names()
                  if n in loaded.params and tuple(loaded.params[n].shape) != tuple(p.shape)]
    if mismatched:
        raise RecipeError(f"recipe key 'ckpt_save_dir': checkpoint {loaded.path} was written for another network "
                          f"({mismatched[0]} has shape {tuple(loaded.params[mismatched[0]].shape)}); "
                          f"use --no-resume or another ckpt_save_dir")
    missing, _ = ms.load_param_into_net(train_step, loaded.params, strict_load=False)
    if missing:
        raise RecipeError(f"recipe key 'ckpt_save_dir': checkpoint {loaded.path} lacks {len(missing)} parameters "
                          f"of this run (e.g. {missing[0]}); use --no-resume or another ckpt_save_dir")
