"""Building a run: the device and the world (rank, world size, collectives), the network (fine-tuned from
ckpt_path if given), the optimizer and the compiled train step, the metrics, and where the run starts (a resumed
checkpoint or the beginning). The loop (loop.py) then trains it.

Every rank builds the same network from the same seed, so all ranks start from identical weights; each rank reads
its own shard; the global batch is batch_size x world size (MindCV's data parallel)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from incv4.trainer import contract
from incv4.trainer.checkpoint.store import Position
from incv4.trainer.data.check import check_run_data
from incv4.trainer.recipe import Recipe
from incv4.trainer.training.console import log, log_error, quiet
from incv4.trainer.training.world import set_up_device, usable_amp_level


@dataclass
class Run:
    recipe: Recipe
    rank: int
    rank_size: int
    device: str
    amp_level: str
    network: object  # the normalising network the train step trains and evaluation evaluates
    train_step: object
    lr_schedule: list
    steps_per_epoch: int
    train_folder: object
    sharing: object  # compile_share.CompileSharing
    metric: object  # metrics.exporter.TrainerMetrics
    position: Position
    say: Callable[[str], None]  # progress lines: rank 0 only (errors go out from every rank)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.recipe.epoch_size

    def epoch_batches(self, epoch: int, skip: int = 0):
        """The epoch's training batches. The data order is fixed by (seed, epoch) and the augmentations draw from
        a dataset seed set per epoch, so a resumed run sees the epoch's data again; a mid-epoch resume skips the
        batches already trained on."""
        import mindspore.dataset as ds

        from incv4.trainer.data import pipeline

        ds.config.set_seed(self.recipe.seed + epoch)
        dataset, _ = pipeline.create_train_dataset(self.recipe, self.rank, self.rank_size, epoch=epoch,
                                                   folder=self.train_folder, normalize=False)
        if skip:
            dataset = dataset.skip(skip)
        return dataset.create_tuple_iterator(num_epochs=1)

    def evaluate(self, before_first_call: Optional[Callable] = None):
        """Top-1/top-5 over the whole val split (each rank its shard, counts summed); with ema, of the EMA
        weights."""
        from incv4.trainer.data import pipeline
        from incv4.trainer.training import evaluate

        dataset = pipeline.create_eval_dataset(self.recipe, self.rank, self.rank_size, normalize=False)
        restore = self.train_step.ema_weights_in() if self.recipe.ema else None  # MindCV evaluates the EMA weights
        try:
            return evaluate.evaluate(self.network, dataset, self.recipe.batch_size, self.rank_size,
                                     before_first_call=before_first_call)
        finally:
            if restore is not None:
                restore()


def build_run(recipe: Recipe, rank: int, rank_size: int, resume: bool = True, scale_lr: bool = False,
              metrics_port: int = 0) -> Run:
    """Raises RecipeError (one line) for bad data, a bad fine-tune checkpoint or a resume checkpoint of another
    network."""
    check_run_data(recipe)  # before MindSpore does anything
    import mindspore as ms

    from incv4.trainer.checkpoint.resume import starting_position
    from incv4.trainer.data import pipeline
    from incv4.trainer.data.folder import list_image_folder
    from incv4.trainer.launcher.compile_share import CompileSharing

    device, rank, rank_size = set_up_device(recipe, rank, rank_size)
    say = log if rank == 0 else quiet
    sharing = CompileSharing.from_env(rank, device, log=log)  # one graph compile per node, not per worker
    amp_level = usable_amp_level("amp_level", recipe.amp_level, device, say)
    _note_sink_mode(recipe, device, say)
    if rank_size == 1:  # under the launcher, the launcher logs the global batch and applies --scale-lr
        recipe = _scale_lr_alone(recipe, scale_lr, say)
    ms.set_seed(recipe.seed)  # identical initial weights on every rank
    train_folder = list_image_folder(recipe.data_dir, recipe.train_split)
    _, steps_per_epoch = pipeline.create_train_dataset(recipe, rank, rank_size, folder=train_folder)
    network = _build_network(recipe, amp_level)
    lr_schedule, train_step = _build_train_step(recipe, network, steps_per_epoch, rank_size, amp_level)
    metric = _start_metrics(recipe, rank, rank_size, metrics_port, steps_per_epoch)
    run = Run(recipe, rank, rank_size, device, amp_level, network, train_step, lr_schedule, steps_per_epoch,
              train_folder, sharing, metric, Position(), say)
    run.position = starting_position(recipe.ckpt_save_dir, train_step, rank, resume, run.total_steps, say)
    if recipe.resume_opt and run.position.global_step == 0:  # a run's own newest checkpoint wins over ckpt_path
        run.position = _resume_optimizer(recipe, train_step.optimizer, steps_per_epoch, say)
    return run


def _resume_optimizer(recipe: Recipe, optimizer, steps_per_epoch: int, say: Callable[[str], None]) -> Position:
    """MindCV's resume_opt (train.py): with ckpt_path, the optimizer's moments and step come back too."""
    from incv4.trainer.checkpoint.resume import optimizer_state_source, restore_optimizer_state

    source = optimizer_state_source(recipe.ckpt_path, recipe.ckpt_save_dir, recipe.model)
    return restore_optimizer_state(optimizer, source, steps_per_epoch, say)


def _note_sink_mode(recipe: Recipe, device: str, say: Callable[[str], None]) -> None:
    from incv4.trainer.training.feeds import uses_sink

    if recipe.dataset_sink_mode and not uses_sink(recipe, device):
        say(f"dataset_sink_mode: MindSpore sinks data on Ascend and GPU only; on {device} the host hands each "
            f"batch to the step (the loss is still read once per chunk of steps)")


def _scale_lr_alone(recipe: Recipe, scale_lr: bool, say: Callable[[str], None]) -> Recipe:
    """A lone process: MindCV's lr is for its reference global batch; --scale-lr scales it linearly."""
    from incv4.trainer.recipe import validate

    global_batch, reference = recipe.batch_size, recipe.reference_global_batch
    if global_batch == reference:
        return recipe
    if not scale_lr:
        say(f"global batch {global_batch} differs from the recipe's reference {reference}; "
            f"lr kept at {recipe.lr:g} (--scale-lr scales it linearly)")
        return recipe
    lr = recipe.lr * global_batch / reference
    say(f"global batch {global_batch} differs from the recipe's reference {reference}; "
        f"--scale-lr: lr {recipe.lr:g} -> {lr:g}")
    return validate({**recipe, "lr": lr, "min_lr": min(recipe.min_lr, lr)}, name=recipe.name)


def _build_network(recipe: Recipe, amp_level: str):
    from incv4.trainer.data.transforms import with_normalizer
    from incv4.trainer.model.amp import cast_network
    from incv4.trainer.model.finetune import load_finetune_weights
    from incv4.trainer.model.inception_v4 import inception_v4

    network = inception_v4(num_classes=recipe.num_classes, in_channels=recipe.in_channels,
                           drop_rate=recipe.drop_rate, bn_momentum=recipe.bn_momentum,
                           bn_beta_init=recipe.bn_beta_init)
    if recipe.ckpt_path:
        load_finetune_weights(network, recipe.ckpt_path, log, ema=recipe.ema)
    elif recipe.pretrained:  # MindCV's published weights, downloaded once and verified (trainer/model/pretrained.py)
        from incv4.trainer.model.pretrained import load_pretrained

        load_pretrained(network, recipe.num_classes, recipe.in_channels, log)
    network = cast_network(network, amp_level)  # as MindCV's trainer casts it (trainer/model/amp.py)
    # the pipelines hand over uint8 images (a quarter of the bytes, no float work on the host): normalise in-graph
    return with_normalizer(recipe, network)


def _build_train_step(recipe: Recipe, network, steps_per_epoch: int, rank_size: int, amp_level: str):
    """(lr per global step, the compiled train step)."""
    from incv4.trainer.model import optim
    from incv4.trainer.training import step

    loss_fn = optim.create_loss(recipe)
    lr_schedule = optim.create_lr_schedule(recipe, steps_per_epoch)
    optimizer = optim.create_optimizer(network, recipe, lr_schedule)
    # As MindCV: the backward pass always scales by the loss scale (harmless in float32); the optimizer divides by
    # it when MindCV would hand it the fixed scale.
    loss_scale, dynamic = optim.loss_scaling(recipe, amp_level)
    extras = step.StepExtras(dynamic_loss_scale=dynamic, clip_value=recipe.clip_value if recipe.clip_grad else None,
                             accumulation_steps=recipe.gradient_accumulation_steps,
                             ema_decay=recipe.ema_decay if recipe.ema else None)
    return lr_schedule, step.build_train_step(network, loss_fn, optimizer, loss_scale, rank_size,
                                              optim.optimizer_loss_scale(recipe),
                                              check_gradients=amp_level != "O0", extras=extras)


def _start_metrics(recipe: Recipe, rank: int, rank_size: int, metrics_port: int, steps_per_epoch: int):
    import mindspore as ms

    from incv4.trainer.metrics import exporter

    # in contract.BUILD_INFO_LABELS' order: model, mindspore_version, world_size, batch_size, recipe
    build_info = (recipe.model, ms.__version__, str(rank_size), str(recipe.batch_size), recipe.name)
    metric = exporter.TrainerMetrics(rank, dict(zip(contract.BUILD_INFO_LABELS, build_info)))
    if metrics_port and exporter.MULTIPROC_ENV not in os.environ:
        try:  # a lone worker serves itself; under the launcher the launcher serves every rank
            exporter.serve(metrics_port, addr=exporter.LOCAL_ADDR)  # a local run: this machine only
        except OSError as err:
            log_error(f"warning: {err}; training goes on without /metrics")
    metric.set_planned(steps_per_epoch * recipe.epoch_size, steps_per_epoch)
    return metric
