"""Learning-rate schedule, optimizer and loss, built from a recipe with MindCV's semantics.

- `create_lr_schedule`: one learning rate per global step, value-for-value MindCV's `create_scheduler`
  (mindcv/scheduler: an optional linear warm-up from `warmup_factor * lr` over `warmup_epochs`, then the main
  schedule over the remaining epochs; per step unless `lr_epoch_stair`).
- `create_optimizer`: momentum SGD as MindCV's `create_optimizer` builds it, weight decay filtered by
  `weight_decay_filter` as MindCV 0.3.0 does (`disable`: every parameter; `norm_and_bias`: not BatchNorm gamma/beta
  nor biases, grouped by name; `auto`: MindSpore's own filter, not gamma/beta); when that key is null,
  MindCV <= 0.2's `filter_bias_and_bn` picks norm_and_bias (true) or disable (false), and without either it is
  MindCV 0.3.0's default, disable.
- `create_loss`: MindCV's `CrossEntropySmooth` (cross entropy with label smoothing, `reduction`, `aux_factor`).
- `optimizer_loss_scale`, `loss_scaling`: which loss scale the optimizer divides by, and the train step's loss scale
  (fixed, dynamic, or what mindspore.Model picks for `auto`), as MindCV's train.py and create_trainer decide them.
"""
from __future__ import annotations

import math
from typing import Callable, List, Mapping

from mindspore import nn, ops

__all__ = ["create_lr_schedule", "create_optimizer", "create_loss", "optimizer_loss_scale", "loss_scaling",
           "no_weight_decay", "weight_decay_filter", "init_group_params", "CrossEntropySmooth", "SCHEDULERS"]

# The recipe (trainer/recipe.py) has refused every opt, scheduler, loss and combination this module does not build,
# before any work started; nothing here checks a recipe again.

# Parameter-name fragments MindCV exempts from weight decay: BatchNorm gamma/beta and every bias.
_NO_DECAY_NAME_PARTS = ("beta", "gamma", "bias")


# ----------------------------------------------------------------------------------------------------------------
# learning-rate schedule (ports of mindcv/scheduler/dynamic_lr.py, same float operations so values are identical)

def _linear_warmup(lr: float, start_factor: float, warmup_epochs: int, steps_per_epoch: int,
                   stair: bool) -> List[float]:
    start_lr, end_lr = lr * start_factor, lr * 1.0
    lrs = []
    for i in range(steps_per_epoch * warmup_epochs):
        epoch = math.floor(i / steps_per_epoch) if stair else i / steps_per_epoch
        multiplier = min(epoch, warmup_epochs) / warmup_epochs
        lrs.append(start_lr + multiplier * (end_lr - start_lr))
    return lrs


def _cosine(r: Mapping, steps_per_epoch: int, epochs: int, stair: bool) -> List[float]:
    """Cosine from lr to min_lr over decay_epochs, num_cycles times (peak x cycle_decay each cycle), then
    min_lr to the end."""
    decay_epochs, eta_min = r["decay_epochs"], r["min_lr"]
    total = steps_per_epoch * epochs
    lrs: List[float] = []
    for cycle in range(r["num_cycles"]):
        delta = 0.5 * (r["lr"] * (r["cycle_decay"] ** cycle) - eta_min)
        for i in range(steps_per_epoch * decay_epochs):
            if len(lrs) >= total:
                break
            t = math.floor(i / steps_per_epoch) if stair else i / steps_per_epoch
            t = min(t, decay_epochs)
            lrs.append(eta_min + delta * (1.0 + math.cos(math.pi * t / decay_epochs)))
    if epochs > r["num_cycles"] * decay_epochs:
        lrs += [eta_min] * ((epochs - r["num_cycles"] * decay_epochs) * steps_per_epoch)
    return lrs


def _constant(r: Mapping, steps_per_epoch: int, epochs: int, stair: bool) -> List[float]:
    return [r["lr"]] * (steps_per_epoch * epochs)


def _per_epoch(factor: Callable[[Mapping, int], float]):
    """A schedule that MindCV always steps per epoch (stair), whatever lr_epoch_stair says."""
    def schedule(r: Mapping, steps_per_epoch: int, epochs: int, stair: bool) -> List[float]:
        return [r["lr"] * factor(r, math.floor(i / steps_per_epoch)) for i in range(steps_per_epoch * epochs)]
    return schedule


def _exponential(r: Mapping, steps_per_epoch: int, epochs: int, stair: bool) -> List[float]:
    return [r["lr"] * r["decay_rate"] ** (math.floor(i / steps_per_epoch) if stair else i / steps_per_epoch)
            for i in range(steps_per_epoch * epochs)]


def _polynomial(r: Mapping, steps_per_epoch: int, epochs: int, stair: bool) -> List[float]:
    # MindCV decays to 0 over the main epochs with power decay_rate
    lrs = []
    for i in range(steps_per_epoch * epochs):
        epoch = math.floor(i / steps_per_epoch) if stair else i / steps_per_epoch
        lrs.append(r["lr"] * (1 - min(epoch, epochs) / epochs) ** r["decay_rate"])
    return lrs


def _multi_step_factor(r: Mapping, epoch: int) -> float:
    return r["decay_rate"] ** sum(1 for m in sorted(r["multi_step_decay_milestones"]) if m <= epoch)


# one entry per name in recipe.SCHEDULERS (tests/unit/trainer/model/test_optim.py checks they agree)
SCHEDULERS = {
    "constant": _constant,
    "cosine_decay": _cosine,
    "warmup_cosine_decay": _cosine,  # MindCV treats both names alike: warm-up comes from warmup_epochs
    "step_decay": _per_epoch(lambda r, e: r["decay_rate"] ** math.floor(e / r["decay_epochs"])),
    "multi_step_decay": _per_epoch(_multi_step_factor),
    "exponential_decay": _exponential,
    "polynomial_decay": _polynomial,
}


def create_lr_schedule(recipe: Mapping, steps_per_epoch: int) -> List[float]:
    """One learning rate per global step for `epoch_size` epochs of `steps_per_epoch` steps (MindCV's values)."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r} "
                         f"(is the training set smaller than one batch per rank?)")
    stair = recipe["lr_epoch_stair"]
    warmup_epochs = recipe["warmup_epochs"]
    main_epochs = recipe["epoch_size"] - warmup_epochs
    warmup = (_linear_warmup(recipe["lr"], recipe["warmup_factor"], warmup_epochs, steps_per_epoch, stair)
              if warmup_epochs > 0 else [])
    return warmup + SCHEDULERS[recipe["scheduler"]](recipe, steps_per_epoch, main_epochs, stair)


# ----------------------------------------------------------------------------------------------------------------
# optimizer


def no_weight_decay(name: str) -> bool:
    """True for parameters MindCV keeps out of weight decay (by name: BatchNorm gamma/beta, biases)."""
    return any(part in name for part in _NO_DECAY_NAME_PARTS)


def optimizer_loss_scale(recipe: Mapping) -> float:
    """The loss scale the optimizer divides gradients by, as MindCV's train.py decides it.

    With a fixed loss scale and no overflow dropping, MindCV hands `loss_scale` to the optimizer (the train step
    multiplies the loss by it and does NOT unscale the gradients itself). In every other case the train step
    unscales and the optimizer gets 1.0.
    """
    customized_step = (recipe["ema"] or recipe["clip_grad"] or recipe["gradient_accumulation_steps"] > 1
                       or recipe["amp_cast_list"] is not None)
    if (recipe["loss_scale_type"] == "fixed" and not recipe["dynamic_loss_scale"]
            and not recipe["drop_overflow_update"] and not customized_step):
        return float(recipe["loss_scale"])
    return 1.0


# MindSpore's DynamicLossScaleManager() default, which mindspore.Model uses for amp O2 when MindCV passes none (auto)
AUTO_INITIAL_LOSS_SCALE = 2.0 ** 24


def loss_scaling(recipe: Mapping, amp_level: str) -> tuple:
    """(initial loss scale, dynamic?) as MindCV's create_trainer builds its loss-scale manager: fixed `loss_scale`,
    or dynamic from `loss_scale`; auto is what mindspore.Model picks for the amp level it runs at (O2: dynamic from
    2**24; otherwise none)."""
    kind = recipe["loss_scale_type"]
    if kind == "dynamic":
        return float(recipe["loss_scale"]), True
    if kind == "auto":
        return (AUTO_INITIAL_LOSS_SCALE, True) if amp_level == "O2" else (1.0, False)
    return float(recipe["loss_scale"]), False


# MindCV 0.3.0's weight-decay filters: mindspore-lab/mindcv, tag v0.3.0
# (commit f9478c626cddfe81c1b078c5884be78d1bb486b4), mindcv/optim/optim_factory.py (create_optimizer,
# init_group_params) and config.py (--weight_decay_filter, default "disable"); train.py passes
# args.weight_decay_filter and args.layer_decay to create_optimizer with the network.
#   disable        one group, every parameter decays; order_params keeps the network's order.
#   norm_and_bias  names holding beta, gamma or bias (or in the model's no_weight_decay()) do not decay.
#   auto           no groups: the optimizer gets the parameter list and weight_decay, and MindSpore's Optimizer
#                  decays every parameter whose name holds neither beta nor gamma (biases DO decay).
# create_optimizer's layer_decay branch is never reached here: the recipe refuses a non-null layer_decay (MindCV
# has no layer map for InceptionV4, so it would put every parameter at lr scale 1, ignoring the value).
# The names are recipe.WEIGHT_DECAY_FILTERS.


def weight_decay_filter(recipe: Mapping) -> str:
    """The recipe's filter: `weight_decay_filter`, else `filter_bias_and_bn` (MindCV <= 0.2's key), else MindCV
    0.3.0's default, disable."""
    chosen = recipe.get("weight_decay_filter")
    if chosen is None:
        return "norm_and_bias" if recipe.get("filter_bias_and_bn") else "disable"
    return chosen


def init_group_params(params: list, weight_decay: float, filter_name: str, no_decay_names=()) -> list:
    """MindCV 0.3.0's init_group_params: the parameter groups for `disable` and `norm_and_bias`."""
    if filter_name == "disable":
        return [{"params": params, "weight_decay": weight_decay}, {"order_params": params}]
    exempt = set(no_decay_names)
    decay, no_decay = [], []
    for p in params:
        (no_decay if no_weight_decay(p.name) or p.name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"order_params": params}]


def create_optimizer(network, recipe: Mapping, lr_schedule):
    """Momentum SGD over the network's trainable parameters (`opt: momentum`, or `sgd` with momentum), lr per
    global step from `lr_schedule` (a list as from `create_lr_schedule`, or a float). Weight decay lives here
    only, per parameter group (or, for `weight_decay_filter: auto`, MindSpore's own filter), as in MindCV."""
    opt = recipe["opt"]
    if isinstance(lr_schedule, (list, tuple)) and not lr_schedule:
        raise ValueError("lr_schedule is empty")
    filter_name = weight_decay_filter(recipe)
    params = network.trainable_params()
    if filter_name == "auto":  # MindCV passes the list and weight_decay on; MindSpore filters gamma/beta by name
        groups, weight_decay = params, recipe["weight_decay"]
    else:
        exempt = network.no_weight_decay() if hasattr(network, "no_weight_decay") else ()
        groups, weight_decay = init_group_params(params, recipe["weight_decay"], filter_name, exempt), 0.0
    loss_scale = optimizer_loss_scale(recipe)
    if opt == "momentum":
        return nn.Momentum(groups, learning_rate=lr_schedule, momentum=recipe["momentum"], weight_decay=weight_decay,
                           use_nesterov=recipe["use_nesterov"], loss_scale=loss_scale)
    return nn.SGD(groups, learning_rate=lr_schedule, momentum=recipe["momentum"], weight_decay=weight_decay,
                  nesterov=recipe["use_nesterov"], loss_scale=loss_scale)


# ----------------------------------------------------------------------------------------------------------------
# loss

class CrossEntropySmooth(nn.LossBase):
    """MindCV's CrossEntropySmooth: cross entropy with label smoothing over the main logits, plus `aux_factor` x
    the same loss over any auxiliary logits (a tuple `(main, aux...)`; InceptionV4 has none).
    Labels: class indices [N] (int) or class probabilities [N, C] (float, e.g. after mixup)."""

    def __init__(self, smoothing: float = 0.0, aux_factor: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        self.smoothing = smoothing
        self.aux_factor = aux_factor
        self.reduction = reduction

    def construct(self, logits, labels):
        loss_aux = 0
        if isinstance(logits, tuple):
            main_logits = logits[0]
            for aux in logits[1:]:
                if self.aux_factor > 0:
                    loss_aux += ops.cross_entropy(aux, labels, reduction=self.reduction,
                                                  label_smoothing=self.smoothing)
        else:
            main_logits = logits
        loss = ops.cross_entropy(main_logits, labels, reduction=self.reduction, label_smoothing=self.smoothing)
        return loss + self.aux_factor * loss_aux


def create_loss(recipe: Mapping) -> CrossEntropySmooth:
    """The recipe's loss: `loss: CE` with `label_smoothing`, `reduction` and `aux_factor` (MindCV's semantics)."""
    return CrossEntropySmooth(recipe["label_smoothing"], recipe["aux_factor"], recipe["reduction"])
