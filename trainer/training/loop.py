"""The training loop: epochs of compiled train steps over a built Run (run.py), through small collaborators
(progress reporting, the divergence guard, evaluation, the checkpoint policy), until the plan is done, the run
diverges or SIGTERM stops it.

The steps run in chunks (chunks.py): the host reads the loss, the non-finite steps and the all-reduced stop flag
once per chunk, which ends at each progress line, at the epoch's end and after at most MAX_CHUNK_STEPS. Batches come
from the host's pipeline, or from MindSpore's device queue in dataset sink mode on Ascend (feeds.py). The train
step skips the update of a non-finite step and all-reduces the stop flag, so every rank stops after the same chunk
when one of them got SIGTERM."""
from __future__ import annotations

from typing import Callable, Optional

from incv4.trainer import contract
from incv4.trainer.checkpoint.policy import CheckpointPolicy
from incv4.trainer.model.pretrained import PretrainedUnavailable
from incv4.trainer.recipe import Recipe, RecipeError
from incv4.trainer.training.console import log, log_error
from incv4.trainer.training.chunks import next_chunk_steps
from incv4.trainer.training.divergence import DivergenceGuard
from incv4.trainer.training.feeds import SinkFeed, feed_for
from incv4.trainer.training.history import TrainingHistory
from incv4.trainer.training.periodic_eval import PeriodicEvaluation
from incv4.trainer.training.progress import ProgressReporter
from incv4.trainer.training.run import Run, build_run
from incv4.trainer.training.stop import StopRequest
from incv4.trainer.training.world import world_from_env


def train(recipe: Recipe, resume: bool = True, scale_lr: bool = False, metrics_port: int = 0) -> int:
    """Run (or continue) the recipe's training in this process, alone or as one rank of the launcher's workers.
    Returns an exit code (trainer/contract.py)."""
    stop = StopRequest()
    stop.install()
    rank, rank_size = world_from_env()
    try:
        run = build_run(recipe, rank, rank_size, resume, scale_lr, metrics_port)
        return run_epochs(run, stop, _history(run, resume))
    except RecipeError as err:
        log_error(f"error: {err}")
        return contract.USAGE
    except PretrainedUnavailable as err:  # the download server may answer next time: retryable
        log_error(f"error: {err}")
        return contract.FAILURE


def run_epochs(run: Run, stop: StopRequest, history: Optional[TrainingHistory] = None) -> int:
    """Train `run` from its position to the end of its plan. Returns OK, DIVERGED or TERMINATED."""
    recipe, position = run.recipe, run.position
    if position.global_step >= run.total_steps:
        run.say(f"nothing to do: the newest checkpoint is at step {position.global_step} of {run.total_steps}")
        return contract.OK
    saving = _checkpoint_policy(run)
    try:
        return _train_epochs(run, stop, saving, _evaluation(run, history), _progress(run, history))
    finally:
        if saving.writer is not None:
            saving.writer.wait()  # the save in flight is complete before the worker reports how it ended


def _train_epochs(run: Run, stop: StopRequest, saving: CheckpointPolicy, evaluation: PeriodicEvaluation,
                  progress: ProgressReporter) -> int:
    recipe, position = run.recipe, run.position
    guard = DivergenceGuard(recipe.max_nonfinite_steps, run.metric)
    feed = feed_for(run, stop)
    run.say(f"training {recipe.name}: {recipe.epoch_size} epochs x {run.steps_per_epoch} steps, {run.rank_size} "
            f"worker(s), device {run.device}, mode {'graph' if recipe.mode == 0 else 'pynative'}, "
            f"amp {run.amp_level}{', dataset sink' if isinstance(feed, SinkFeed) else ''}")
    while position.epoch < recipe.epoch_size:
        feed.begin_epoch(run.epoch_batches, position.epoch, position.step_in_epoch)
        progress.epoch_started()
        while position.step_in_epoch < run.steps_per_epoch:
            steps = next_chunk_steps(position.step_in_epoch, run.steps_per_epoch, recipe.log_interval,
                                     first=not progress.compiled)
            progress.chunk_starting()
            tally = feed.run(steps, guard.in_row)
            if tally.steps == 0:  # the epoch's batches ran out early
                break
            position.global_step += tally.steps
            position.step_in_epoch += tally.steps
            progress.chunk_finished(position, tally)
            if guard.diverged(tally, position.global_step):
                return contract.DIVERGED
            progress.report(position, tally.loss)
            if stop.agreed(tally.stop_any, run.rank_size):
                saving.on_stop(run.train_step, position)
                run.say(f"stopped by SIGTERM at step {position.global_step}/{run.total_steps}")
                return contract.TERMINATED
        position.epoch, position.step_in_epoch = position.epoch + 1, 0
        saving.after_epoch(run.train_step, position, evaluation.after_epoch(position.epoch))
    progress.finished(position.global_step, evaluation.last)
    return contract.OK


def _checkpoint_policy(run: Run) -> CheckpointPolicy:
    """Rank 0 writes; it warns at the start when the disk cannot hold the checkpoints the run keeps."""
    from incv4.trainer.checkpoint.policy import retention
    from incv4.trainer.checkpoint.store import CheckpointWriter

    writer = None
    if run.rank == 0:
        recipe = run.recipe
        # Asynchronous: training goes on while the file is written (store.py keeps the atomic-manifest guarantees).
        writer = CheckpointWriter(recipe.ckpt_save_dir, recipe.keep_checkpoint_max, metrics=run.metric, log=log,
                                  retain=retention(recipe.ckpt_save_policy, recipe.keep_checkpoint_max),
                                  asynchronous=True)
        writer.warn_if_short_of_space(run.train_step)
        writer.prepare(run.train_step)  # the copy's host memory now, so the first save stalls no longer than the rest
    return CheckpointPolicy(writer, run.recipe.ckpt_save_interval, run.recipe.epoch_size, run.say)


def _evaluation(run: Run, history: Optional[TrainingHistory] = None) -> PeriodicEvaluation:
    return PeriodicEvaluation(run.recipe, run.evaluate, _recalibration(run), run.sharing.before_first_call,
                              run.metric, run.say, history=history)


def _recalibration(run: Run) -> Optional[Callable[[int], None]]:
    """BatchNorm recalibration before each evaluation when the recipe asks for it, from batches of their own
    seeds (apart from the epochs' data)."""
    passes = run.recipe.bn_recalibrate_steps
    if passes <= 0:
        return None
    from incv4.trainer.training import bn_recalibration

    recalibrator = bn_recalibration.BatchNormRecalibrator(run.network)
    return lambda epochs_done: bn_recalibration.recalibrate(
        recalibrator, run.train_step, lambda round_: run.epoch_batches(10_000 + epochs_done * 100 + round_), passes)


def _progress(run: Run, history: Optional[TrainingHistory] = None) -> ProgressReporter:
    return ProgressReporter(run.recipe, run.rank_size, run.steps_per_epoch, run.lr_schedule, run.metric, run.say,
                            history=history)


def _history(run: Run, resume: bool) -> Optional[TrainingHistory]:
    """Rank 0's history.jsonl in ckpt_save_dir, started with what `incv4 report` shows of the run."""
    if run.rank != 0:
        return None
    history = TrainingHistory(run.recipe.ckpt_save_dir, run.steps_per_epoch, log)
    history.start(run.position.global_step, resume, {
        "recipe": dict(run.recipe), "recipe_name": run.recipe.name, "world_size": run.rank_size,
        "global_batch": run.recipe.batch_size * run.rank_size, "steps_per_epoch": run.steps_per_epoch,
        "total_steps": run.total_steps})
    return history
