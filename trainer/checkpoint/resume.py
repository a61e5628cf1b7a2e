"""Where a run starts: the newest checkpoint that loads (weights, BatchNorm statistics, optimizer state and the lr
schedule's position, restored into the train step), else with `resume_opt` the optimizer state of `ckpt_path`
(MindCV's resume), or the beginning. A fresh start (--no-resume) first moves the
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


# The optimizer's hyper-parameters come from the recipe, never from a checkpoint.
_OPTIMIZER_HYPER_PARAMETERS = ("learning_rate", "momentum", "weight_decay")


def optimizer_state_names(optimizer) -> list:
    """The optimizer's own state: its moments and `global_step` (the lr schedule's position)."""
    weights = {p.name for p in optimizer.parameters}
    return [p.name for p in optimizer.get_parameters()
            if p.name not in weights and p.name not in _OPTIMIZER_HYPER_PARAMETERS]


def optimizer_state_source(ckpt_path: str, ckpt_save_dir: str, model: str) -> str:
    """Where resume_opt reads the state: MindCV's `<ckpt_save_dir>/optim_<model>.ckpt` (its train.py) when it
    exists, else ckpt_path itself (incv4's checkpoints and MindCV's train-network checkpoints hold the state)."""
    import os

    mindcv_file = os.path.join(ckpt_save_dir, f"optim_{model}.ckpt")
    return mindcv_file if os.path.isfile(mindcv_file) else ckpt_path


def restore_optimizer_state(optimizer, source: str, steps_per_epoch: int, say: Callable[[str], None]) \
        -> store.Position:
    """resume_opt: load the optimizer's state from `source`; the run goes on from its global step, as MindCV's
    train.py starts from `optimizer.global_step`. A source without the state is a RecipeError (one line)."""
    import mindspore as ms

    where = f"recipe key 'resume_opt': checkpoint '{source}'"
    try:
        params = ms.load_checkpoint(source)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for damaged files
        text = str(err).strip()
        raise RecipeError(f"{where} does not load ({text.splitlines()[0] if text else type(err).__name__})") from None
    own = {p.name: p for p in optimizer.get_parameters()}
    names = optimizer_state_names(optimizer)
    missing = [n for n in names if n not in params]
    if missing:
        raise RecipeError(f"{where} holds no optimizer state for this run ({len(missing)} tensors missing, "
                          f"e.g. {missing[0]})")
    wrong = [n for n in names if tuple(params[n].shape) != tuple(own[n].shape)]
    if wrong:
        raise RecipeError(f"{where} holds the optimizer state of another network ({wrong[0]} has shape "
                          f"{tuple(params[wrong[0]].shape)})")
    ms.load_param_into_net(optimizer, {n: params[n] for n in names}, strict_load=False)
    step = int(optimizer.global_step.asnumpy().reshape(-1)[0])
    say(f"resume_opt: optimizer state ({len(names)} tensors) from {source}; continuing at step {step}")
    return store.Position(epoch=step // steps_per_epoch, global_step=step, step_in_epoch=step % steps_per_epoch)
