"""One training worker: `python -m incv4.trainer.training.train --config C [--data-dir D] [--set k=v]... [--ckpt-path P]
[--no-resume] [--scale-lr] [--metrics-port N]`.

Alone it trains on one process; started by the launcher (RANK_SIZE > 1 and MindSpore's dynamic-cluster env) it is
one data-parallel rank, as in MindCV: gradients averaged across ranks (gradients_mean), global batch =
batch_size x world size, each rank reads its own shard, every rank starts from the same seeded weights.

Choices worth knowing:
- The step is a Python loop over a compiled (graph mode) train-step cell, on every device. Dataset sink mode is
  not used: the CPU has no device queue, and the per-step loop is what gives per-step SIGTERM, NaN and progress
  handling. On Ascend this costs one host round trip per step; a recipe asking for sink mode gets a log line.
- The train step skips the optimizer update when any gradient is non-finite (as MindSpore's loss-scale cells do)
  and all-reduces a stop flag, so every rank stops after the same step when one of them got SIGTERM.
- BatchNorm: MindCV's momentum 0.9997 barely moves the moving statistics in a short run, so a short run evaluates
  with statistics that are still near their initial values. `bn_recalibrate_steps: N` (incv4's key; 0 = off =
  MindCV) re-estimates them before each evaluation from N forward passes over training batches (no update), by
  solving the moving-average recurrence for the average of those batches' statistics. The demo recipe uses it.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from typing import Callable, Optional, Sequence

from incv4.trainer import contract
from incv4.trainer.recipe import RecipeError

# Test hook: comma-separated global steps (1-based) whose loss is multiplied by NaN inside the train step.
NAN_AT_STEP_ENV = "INCV4_TEST_NAN_AT_STEP"


def log(message: str) -> None:
    print(message, flush=True)


def log_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m incv4.trainer.training.train", description="one InceptionV4 worker")
    parser.add_argument("--config", "-c", required=True, help="recipe YAML (MindCV keys)")
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ckpt-path", "--ckpt_path", dest="ckpt_path", default=None,
                        help="weights to fine-tune from (MindCV's ckpt_path)")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in ckpt_save_dir")
    parser.add_argument("--scale-lr", action="store_true",
                        help="scale lr linearly by global batch / the recipe's reference global batch")
    parser.add_argument("--metrics-port", type=int, default=0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from incv4.trainer import recipe as recipes

    try:
        recipe = recipes.load(args.config, args.overrides, data_dir=args.data_dir, ckpt_path=args.ckpt_path)
    except RecipeError as err:
        log_error(f"error: {err}")
        return contract.USAGE
    return train(recipe, resume=not args.no_resume, scale_lr=args.scale_lr, metrics_port=args.metrics_port)


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


def nan_steps_from_env() -> set:
    raw = os.environ.get(NAN_AT_STEP_ENV, "").strip()
    return {int(s) for s in raw.split(",") if s.strip()} if raw else set()


class StopRequest:
    """Set by SIGTERM; the training loop finishes the current step, saves and exits with TERMINATED."""

    def __init__(self):
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        if not self.requested:
            log("SIGTERM received: finishing the current step, then saving a checkpoint")
        self.requested = True


class BatchNormRecalibrator:
    """Re-estimates BatchNorm moving statistics from N train-mode forward passes.

    Each pass moves a statistic m by m <- mu*m + (1-mu)*b (b: that batch's statistic, mu: the layer's momentum).
    After N passes from m0: mN = mu^N m0 + (1-mu) sum_k mu^(N-k) b_k, so the average of the batches' statistics
    (weighted mu^(N-k), near-uniform for mu near 1) is (mN - mu^N m0) / (1 - mu^N). That is exact for any
    momentum, needs no second compiled graph, and leaves MindCV's momentum untouched for training."""

    def __init__(self, network):
        from mindspore import nn

        self.layers = [cell for _, cell in network.cells_and_names()
                       if isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d))]

    def snapshot(self):
        import numpy as np

        return [(layer.moving_mean.asnumpy().astype(np.float64), layer.moving_variance.asnumpy().astype(np.float64))
                for layer in self.layers]

    def solve(self, before, passes: int) -> None:
        import mindspore as ms
        import numpy as np

        for layer, (mean0, var0) in zip(self.layers, before):
            mu = 1.0 - float(layer.momentum)  # MindSpore stores 1 - momentum on the cell
            keep = mu ** passes
            for param, start in ((layer.moving_mean, mean0), (layer.moving_variance, var0)):
                now = param.asnumpy().astype(np.float64)
                estimate = (now - keep * start) / (1.0 - keep)
                param.set_data(ms.Tensor(estimate.astype(np.float32)))


def _load_finetune_weights(network, ckpt_path: str) -> None:
    """MindCV's ckpt_path: load weights by name; parameters whose shape differs (a new classifier for another
    num_classes) keep their fresh initialisation and are named in a log line."""
    import mindspore as ms

    if not os.path.isfile(ckpt_path):
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' does not exist")
    try:
        params = ms.load_checkpoint(ckpt_path)
    except Exception as err:
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' does not load ({_first_line(err)})") \
            from None
    usable, skipped = {}, []
    for name, param in network.parameters_and_names():
        if name not in params:
            skipped.append(f"{name} (absent)")
        elif tuple(params[name].shape) != tuple(param.shape):
            skipped.append(f"{name} (checkpoint {tuple(params[name].shape)}, network {tuple(param.shape)})")
        else:
            usable[name] = params[name]
    if not usable:
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' has no parameter of this network")
    ms.load_param_into_net(network, usable, strict_load=False)
    log(f"fine-tuning from {ckpt_path}: loaded {len(usable)} parameters"
        + (f"; re-initialised {len(skipped)}: {', '.join(skipped)}" if skipped else ""))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(recipe, resume: bool = True, scale_lr: bool = False, metrics_port: int = 0) -> int:
    """Run (or continue) the recipe's training on this process. Returns an exit code (trainer/contract.py)."""
    stop = StopRequest()
    stop.install()
    rank, rank_size = world_from_env()
    try:
        return _train(recipe, rank, rank_size, stop, resume, scale_lr, metrics_port)
    except RecipeError as err:
        log_error(f"error: {err}")
        return contract.USAGE


def _train(recipe, rank: int, rank_size: int, stop: StopRequest, resume: bool, scale_lr: bool,
           metrics_port: int) -> int:
    from incv4.trainer.checkpoint import store as checkpoint
    from incv4.trainer.launcher import compile_share
    from incv4.trainer.data import pipeline as data
    from incv4.trainer.metrics import exporter as metrics
    from incv4.trainer import recipe as recipes

    splits = [recipe.train_split] + ([recipe.val_split] if recipe.val_while_train else [])
    recipes.require_data_dir(recipe, splits)
    data.check_image_folder(recipe.data_dir, splits)  # bad data stops here: DataError is a RecipeError

    import mindspore as ms
    import numpy as np

    from incv4.trainer import cpu_backend
    from incv4.trainer.training import step as step_lib
    from incv4.trainer.training import evaluate
    from incv4.trainer.model import inception_v4 as model
    from incv4.trainer.model import optim

    device = choose_device(recipe.device_target)
    cpu_backend.prepare(device, log if rank == 0 else (lambda _msg: None))  # before any kernel
    ms.set_context(mode=ms.GRAPH_MODE if recipe.mode == 0 else ms.PYNATIVE_MODE, device_target=device)
    from incv4.trainer.launcher.launch import apply_worker_settings

    apply_worker_settings()  # under the launcher: the per-worker CPU thread count, so N workers share the cores
    if device == "Ascend" and "DEVICE_ID" in os.environ:
        ms.set_context(device_id=int(os.environ["DEVICE_ID"]))
    if rank_size > 1:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, rank_size = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=rank_size)
    say = log if rank == 0 else (lambda _msg: None)  # progress from rank 0 only; errors from every rank
    sharing = compile_share.CompileSharing.from_env(rank, device, log=log)  # one graph compile per node, not per worker

    amp_level = recipe.amp_level
    if device == "CPU" and amp_level != "O0":
        say(f"amp_level {amp_level}: the CPU has no float16 kernels for this network; using O0 (float32)")
        amp_level = "O0"
    if recipe.dataset_sink_mode:
        say("dataset_sink_mode: stepping per batch from Python instead (CPU has no device queue; the per-step "
            "loop gives SIGTERM, NaN and progress handling)")

    global_batch = recipe.batch_size * rank_size
    if rank_size == 1:  # under the launcher, the launcher logs the global batch and applies --scale-lr
        lr = recipe.lr
        if global_batch != recipe.reference_global_batch and scale_lr:
            lr = recipe.lr * global_batch / recipe.reference_global_batch
            say(f"global batch {global_batch} differs from the recipe's reference {recipe.reference_global_batch}; "
                f"--scale-lr: lr {recipe.lr:g} -> {lr:g}")
            recipe = recipes.validate({**recipe, "lr": lr, "min_lr": min(recipe.min_lr, lr)}, name=recipe.name)
        elif global_batch != recipe.reference_global_batch:
            say(f"global batch {global_batch} differs from the recipe's reference {recipe.reference_global_batch}; "
                f"lr kept at {lr:g} (--scale-lr scales it linearly)")

    ms.set_seed(recipe.seed)  # identical initial weights on every rank
    train_folder = data.list_image_folder(recipe.data_dir, recipe.train_split)
    _, steps_per_epoch = data.create_train_dataset(recipe, rank, rank_size, folder=train_folder)
    total_steps = steps_per_epoch * recipe.epoch_size

    network = model.inception_v4(num_classes=recipe.num_classes, in_channels=recipe.in_channels,
                                  drop_rate=recipe.drop_rate or 0.0, bn_momentum=recipe.bn_momentum,
                                  bn_beta_init=recipe.bn_beta_init)
    if recipe.ckpt_path:
        _load_finetune_weights(network, recipe.ckpt_path)
    if amp_level != "O0":
        ms.amp.auto_mixed_precision(network, amp_level)
    # the pipelines hand over uint8 images (a quarter of the bytes, no float work on the host): normalise in-graph
    network = data.with_normalizer(recipe, network)
    loss_fn = optim.create_loss(recipe)
    lr_schedule = optim.create_lr_schedule(recipe, steps_per_epoch)
    optimizer = optim.create_optimizer(network, recipe, lr_schedule)
    # As MindCV: the backward pass always scales by the recipe's loss_scale (harmless in float32); the optimizer
    # divides by it when MindCV would hand it the fixed scale.
    train_step = step_lib.build_train_step(network, loss_fn, optimizer, recipe.loss_scale, rank_size,
                                  optim.optimizer_loss_scale(recipe), check_gradients=amp_level != "O0")

    metric = metrics.TrainerMetrics(rank, {"model": recipe.model, "mindspore_version": ms.__version__,
                                           "world_size": str(rank_size), "batch_size": str(recipe.batch_size),
                                           "recipe": recipe.name})
    if metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        try:  # a lone worker serves itself; under the launcher the launcher serves every rank
            metrics.serve(metrics_port)
        except OSError as err:
            log_error(f"warning: {err}; training goes on without /metrics")
    metric.set_planned(total_steps, steps_per_epoch)

    ckpt_dir = recipe.ckpt_save_dir
    position = checkpoint.Position()
    if resume:
        checkpoint.remove_stale_temporaries(ckpt_dir) if rank == 0 else None
        loaded = checkpoint.load_newest(ckpt_dir, log=say)
        if loaded is not None:
            _restore(train_step, loaded, recipe)
            position = loaded.position
            say(f"resuming from {loaded.path}: epoch {position.epoch}, step {position.global_step}/{total_steps}")
    elif rank == 0:
        moved = checkpoint.set_aside(ckpt_dir)  # so a later resume never mixes the old run with this one
        if moved:
            say(f"--no-resume: starting fresh; the previous run's checkpoints moved to {moved}")
    if position.global_step >= total_steps:
        say(f"nothing to do: the newest checkpoint is at step {position.global_step} of {total_steps}")
        return contract.OK

    writer = checkpoint.CheckpointWriter(ckpt_dir, recipe.keep_checkpoint_max, metrics=metric, log=log) \
        if rank == 0 else None
    if writer is not None:
        writer.warn_if_short_of_space(train_step)
    recalibrator = BatchNormRecalibrator(network) if recipe.bn_recalibrate_steps > 0 else None
    nan_steps = nan_steps_from_env()
    one = ms.Tensor(np.float32(1.0))
    nan = ms.Tensor(np.float32(np.nan))
    do_update = ms.Tensor(True)
    samples_per_step = global_batch
    nonfinite_in_row = 0
    compiled = eval_compiled = False
    last_accuracy = None
    say(f"training {recipe.name}: {recipe.epoch_size} epochs x {steps_per_epoch} steps, {rank_size} worker(s), "
        f"device {device}, mode {'graph' if recipe.mode == 0 else 'pynative'}, amp {amp_level}")

    while position.epoch < recipe.epoch_size:
        epoch = position.epoch
        dataset = _epoch_dataset(data, recipe, train_folder, rank, rank_size, epoch, position.step_in_epoch)
        interval_start, interval_steps = time.monotonic(), 0
        step_start = time.monotonic()
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            data_wait = time.monotonic() - step_start
            stepped_at = time.monotonic()
            stop_flag = ms.Tensor(np.float32(1.0 if stop.requested else 0.0))
            if not compiled:
                sharing.before_first_call(train_step, images, labels, do_update, stop_flag)
            loss, finite, stop_any = train_step(images, labels, do_update, stop_flag)
            loss_value = float(loss.asnumpy())
            finite_value = bool(finite.asnumpy())
            now = time.monotonic()
            if not compiled:
                compiled = True
                metric.compile_finished(now - stepped_at)
                say(f"first step done in {now - stepped_at:.1f} s (graph compile included)")
                interval_start, interval_steps = now, -1  # keep the compile out of img/s and ETA
            position.global_step += 1
            position.step_in_epoch += 1
            interval_steps += 1
            current_lr = lr_schedule[min(position.global_step - 1, len(lr_schedule) - 1)]
            metric.steps_done(1, now - stepped_at, recipe.batch_size, data_wait, loss_value, current_lr,
                              position.global_step, epoch + 1)
            if not finite_value or not math.isfinite(loss_value):
                nonfinite_in_row += 1
                metric.nonfinite_loss()
                log_error(f"warning: non-finite loss/gradients at step {position.global_step} "
                          f"({nonfinite_in_row} in a row); update skipped")
                if nonfinite_in_row >= recipe.max_nonfinite_steps:
                    log_error(f"error: training diverged: {nonfinite_in_row} non-finite steps in a row "
                              f"(max_nonfinite_steps {recipe.max_nonfinite_steps}) at step {position.global_step}; "
                              f"stopping without saving (the last checkpoint is the last good state)")
                    return contract.DIVERGED
            else:
                nonfinite_in_row = 0
            if recipe.log_interval and (position.step_in_epoch % recipe.log_interval == 0
                                        or position.step_in_epoch == steps_per_epoch) and interval_steps > 0:
                elapsed = now - interval_start
                per_step = elapsed / interval_steps
                say(f"epoch {epoch + 1}/{recipe.epoch_size} step {position.step_in_epoch}/{steps_per_epoch} "
                    f"loss {loss_value:.4f} lr {current_lr:.6f} img/s {samples_per_step / per_step:.1f} "
                    f"ETA {_format_eta(per_step * (total_steps - position.global_step))}")
                interval_start, interval_steps = now, 0
            # ranks agree through the all-reduced flag (the next step carries a late signal); alone, stop now
            if float(stop_any.asnumpy()) > 0 or (rank_size == 1 and stop.requested):
                if writer is not None:
                    writer.save(train_step, position)
                say(f"stopped by SIGTERM at step {position.global_step}/{total_steps}")
                return contract.TERMINATED
            step_start = time.monotonic()
        position.epoch += 1
        position.step_in_epoch = 0
        extra = {}
        last_epoch = position.epoch == recipe.epoch_size
        if recipe.val_while_train and (position.epoch % recipe.val_interval == 0 or last_epoch):
            if recalibrator is not None:
                _recalibrate(recalibrator, train_step, data, recipe, train_folder, rank, rank_size, position.epoch)
            started = time.monotonic()
            accuracy = evaluate.evaluate(network, data.create_eval_dataset(recipe, rank, rank_size, normalize=False),
                                         recipe.batch_size, rank_size,
                                         before_first_call=None if eval_compiled else sharing.before_first_call)
            eval_compiled = True
            metric.evaluated(accuracy.top1, accuracy.top5)
            last_accuracy = accuracy
            extra = accuracy.as_dict()
            say(f"epoch {position.epoch}/{recipe.epoch_size} eval: top-1 {accuracy.top1 * 100:.2f}% "
                f"top-5 {accuracy.top5 * 100:.2f}% over {accuracy.samples} images "
                f"({time.monotonic() - started:.1f} s)")
        if writer is not None and (position.epoch % recipe.ckpt_save_interval == 0 or last_epoch):
            path = writer.save(train_step, position, extra)
            if path:
                say(f"checkpoint {path}")
    summary = f"training finished: {position.global_step} steps"
    if last_accuracy is not None:
        summary += f", top-1 {last_accuracy.top1 * 100:.2f}% top-5 {last_accuracy.top5 * 100:.2f}%"
    say(summary)
    return contract.OK


def _epoch_dataset(data, recipe, folder, rank: int, rank_size: int, epoch: int, skip_batches: int):
    """The epoch's training batches: the data module fixes the order by (seed, epoch) and the augmentations draw
    from a dataset seed set per epoch, so a resumed run sees the epoch's data order again; a mid-epoch resume
    skips the batches already trained on."""
    import mindspore.dataset as ds

    ds.config.set_seed(recipe.seed + epoch)
    dataset, _ = data.create_train_dataset(recipe, rank, rank_size, epoch=epoch, folder=folder, normalize=False)
    if skip_batches:
        dataset = dataset.skip(skip_batches)
    return dataset


def _recalibrate(recalibrator: BatchNormRecalibrator, train_step, data, recipe, folder, rank, rank_size,
                 epoch) -> None:
    import mindspore as ms
    import numpy as np

    passes = recipe.bn_recalibrate_steps
    before = recalibrator.snapshot()
    one = ms.Tensor(np.float32(1.0))
    no_update = ms.Tensor(False)
    no_stop = ms.Tensor(np.float32(0.0))
    done = 0
    round_ = 0
    while done < passes:  # a small shard may hold fewer batches than passes: go round again
        dataset = _epoch_dataset(data, recipe, folder, rank, rank_size, 10_000 + epoch * 100 + round_, 0)
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            train_step(images, labels, no_update, no_stop)  # the forward moves BN statistics; no update
            done += 1
            if done == passes:
                break
        round_ += 1
    recalibrator.solve(before, passes)


def _restore(train_step, loaded, recipe) -> None:
    """Load a resume checkpoint into the train step (weights, BN statistics, optimizer state, lr position)."""
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


if __name__ == "__main__":
    sys.exit(main())
