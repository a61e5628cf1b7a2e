"""Training recipes: MindCV's YAML keys and defaults, validated before any work starts.

A recipe is a flat mapping of MindCV's `config.py` keys, so a MindCV `inception_v4` YAML runs unchanged. Keys a
recipe leaves out take MindCV's defaults. Every problem (unknown key, wrong type, impossible value, a key given
twice) raises `RecipeError` with one line that names the key. A number key also takes the text MindCV's float()
reads, such as `lr: 1e-3`, which YAML 1.1 (PyYAML) leaves a string. This module imports nothing heavy: the CLI renders jobs with it.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, Optional

import yaml

from incv4.trainer.data.augment_policy import PolicyError, parse as parse_augment_policy  # pure Python

# libyaml's emitter when PyYAML was built with it: the same text as yaml.safe_dump, and much faster than the
# pure-Python emitter, which would otherwise dominate `incv4 render`'s own time.
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class RecipeError(ValueError):
    """A recipe problem, described in one line that names the key."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    def __init__(self, key, first_line: int, node):
        super().__init__(None, None, f"duplicate key {key!r}", node.start_mark)
        self.key, self.first_line = key, first_line


# Deeper YAML is no recipe (one nests 2 levels). A limit of our own: PyYAML's composer recurses per level, and
# Python's recursion limit is whatever an import set it to (MindSpore's sets 10000, where 5000 levels take ~20 s and
# could overflow the C stack before RecursionError).
MAX_NESTING = 64


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (YAML says keys are unique,
    and PyYAML would silently keep the last value), and nesting deeper than MAX_NESTING is a RecursionError."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise RecursionError(f"nested deeper than {MAX_NESTING} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # merge keys (`<<`) may legitimately be overridden; complex keys are refused later
            key = self.construct_object(key_node)
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Key:
    kind: str  # int | float | bool | str | pair | list
    default: Any
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns a problem description or None
    nullable: bool = False
    choices: Optional[tuple] = None
    help: str = ""


def _at_least(low):
    return lambda v: None if v >= low else f"must be >= {low}, got {v}"


def _positive(v):
    return None if v > 0 else f"must be > 0, got {v}"


def _probability(v):
    return None if 0.0 <= v <= 1.0 else f"must be a probability in [0, 1], got {v}"


def _ordered_pair(v):
    if v[0] <= 0 or v[1] <= 0 or v[0] > v[1]:
        return f"must be [low, high] with 0 < low <= high, got {list(v)}"
    return None


def _unit_pair(v):
    return _ordered_pair(v) or (None if v[1] <= 1.0 else f"must lie within (0, 1], got {list(v)}")


def _supported(names: tuple):
    """For a MindCV choice incv4 does not implement: refused by name (the key's choices stay MindCV's)."""
    return lambda v: None if v in names else f"'{v}' is not supported by incv4 (supported: {', '.join(names)})"


def _off(v):
    """MindCV's mixup, cutmix and repeated or split augmentation: InceptionV4's recipe leaves them off."""
    return None if v == 0 else f"{v} is not supported by incv4 (InceptionV4's recipe leaves it off); set it to 0"


def _inert(default, depends_on: str):
    """A key that only matters through another one incv4 refuses: a value other than its default would be accepted
    and change nothing."""
    return lambda v: None if v == default else f"{v} changes nothing: it only matters with {depends_on}; leave it " \
                                               f"at {default}"


def _auto_augment(v):
    try:
        parse_augment_policy(v)
    except PolicyError as err:
        return str(err)
    return None


# What incv4 builds of MindCV's choices: the one place that says so (trainer/model/optim.py builds exactly these;
# tests/unit/trainer/model/test_optim.py checks the schedules agree).
OPTIMIZERS = ("momentum", "sgd")
SCHEDULERS = ("constant", "cosine_decay", "warmup_cosine_decay", "step_decay", "multi_step_decay",
              "exponential_decay", "polynomial_decay")
LOSSES = ("CE",)
# MindCV 0.3.0's weight-decay filters (config.py --weight_decay_filter; trainer/model/optim.py says what each does)
WEIGHT_DECAY_FILTERS = ("disable", "auto", "norm_and_bias")
MIXING = "mixup or cutmix > 0, which incv4 refuses"


IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

# MindCV's config.py keys with MindCV's defaults (mindcv 0.3.0), plus incv4's own keys at the end.
KEYS: dict[str, Key] = {
    # system
    "mode": Key("int", 0, choices=(0, 1), help="0 graph mode, 1 PyNative"),
    # MindCV's default; left out, the worker count decides (check_world_size)
    "distribute": Key("bool", False),
    "val_while_train": Key("bool", False),
    "val_interval": Key("int", 1, _positive),
    "log_interval": Key("int", 100, _positive, nullable=True),
    "pretrained": Key("bool", False),
    "ckpt_path": Key("str", ""),
    "resume_opt": Key("bool", False),
    "seed": Key("int", 42, _at_least(0)),
    "device_target": Key("str", "Ascend", choices=("Ascend", "CPU", "GPU")),
    # dataset
    "dataset": Key("str", "imagenet", choices=("imagenet",)),
    "data_dir": Key("str", "./"),
    "train_split": Key("str", "train"),
    "val_split": Key("str", "val"),
    "dataset_download": Key("bool", False, lambda v: "is not supported: incv4 never downloads data" if v else None),
    "num_parallel_workers": Key("int", 8, _positive),
    "shuffle": Key("bool", True),
    "num_samples": Key("int", None, _positive, nullable=True),
    "batch_size": Key("int", 128, _positive),
    "drop_remainder": Key("bool", True),
    "aug_repeats": Key("int", 0, _off),
    # augmentation
    "image_resize": Key("int", 224, _at_least(75)),
    "scale": Key("pair", [0.08, 1.0], _unit_pair),
    "ratio": Key("pair", [0.75, 1.333], _ordered_pair),
    "hflip": Key("float", 0.5, _probability),
    "vflip": Key("float", 0.0, _probability),
    "color_jitter": Key("float", 0.4, _at_least(0), nullable=True),
    "interpolation": Key("str", "bilinear", choices=("bilinear", "bicubic", "nearest", "area", "lanczos")),
    "auto_augment": Key("str", None, _auto_augment, nullable=True),
    "aug_splits": Key("int", 0, _off),
    "re_prob": Key("float", 0.0, _probability),
    "re_scale": Key("pair", [0.02, 0.33], _unit_pair),
    "re_ratio": Key("pair", [0.3, 3.3], _ordered_pair),
    "re_value": Key("float", 0),
    "re_max_attempts": Key("int", 10, _positive),
    "mean": Key("list", IMAGENET_MEAN),
    "std": Key("list", IMAGENET_STD),
    "crop_pct": Key("float", 0.875, lambda v: None if 0 < v <= 1 else f"must be in (0, 1], got {v}"),
    "mixup": Key("float", 0.0, _off),
    "cutmix": Key("float", 0.0, _off),
    # MindCV's Mixup(prob=cutmix_prob): how often a batch is mixed (mindcv/data/loader.py create_loader)
    "cutmix_prob": Key("float", 1.0, _inert(1.0, MIXING)),
    # not MindCV 0.3.0 keys (timm's): its create_loader fixes switch_prob 0.5 and mode batch
    "mixup_prob": Key("float", 1.0, _inert(1.0, MIXING)),
    "mixup_switch_prob": Key("float", 0.5, _inert(0.5, MIXING)),
    "mixup_mode": Key("str", "batch", _inert("batch", MIXING), choices=("batch", "pair", "elem")),
    "mixup_off_epoch": Key("float", 0.0, _inert(0.0, MIXING)),
    # model
    "model": Key("str", "inception_v4", choices=("inception_v4",)),
    "num_classes": Key("int", 1000, _positive),
    "in_channels": Key("int", 3, _positive),
    # null: the model's default, 0.2 (MindCV's create_model drops None arguments)
    "drop_rate": Key("float", 0.2, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {v}", nullable=True),
    # MindCV's InceptionV4 (mindcv/models/inceptionv4.py) takes no drop_path_rate: create_model passes a non-null
    # value on and the constructor rejects it. 0 and null mean "none" and are accepted.
    "drop_path_rate": Key("float", None, lambda v: None if v == 0 else
                          f"must be 0 or null, got {v}: MindCV's InceptionV4 has no drop path (stochastic depth)",
                          nullable=True),
    "amp_level": Key("str", "O0", choices=("O0", "O1", "O2", "O3")),
    "val_amp_level": Key("str", "O0", choices=("O0", "O1", "O2", "O3")),
    "amp_cast_list": Key("str", None, lambda v: "is not supported: incv4 casts by amp_level only", nullable=True),
    "keep_checkpoint_max": Key("int", 10, _positive),
    "ckpt_save_dir": Key("str", "./ckpt"),
    "ckpt_save_interval": Key("int", 1, _positive),
    "ckpt_save_policy": Key("str", "latest_k", choices=("latest_k", "top_k"), nullable=True),
    "epoch_size": Key("int", 90, _positive),
    "dataset_sink_mode": Key("bool", True),
    # MindCV's train-step extras, as its TrainStep does them (trainer/training/step.py)
    "ema": Key("bool", False),
    "ema_decay": Key("float", 0.9999, _probability),
    "clip_grad": Key("bool", False),
    "clip_value": Key("float", 15.0, _positive),
    "gradient_accumulation_steps": Key("int", 1, _positive),
    # optimizer
    "opt": Key("str", "adam", _supported(OPTIMIZERS),
               choices=("sgd", "momentum", "adam", "adamw", "lion", "rmsprop", "adagrad", "lamb", "nadam")),
    "momentum": Key("float", 0.9, _probability),
    "weight_decay": Key("float", 1e-6, _at_least(0)),
    "loss_scale_type": Key("str", "fixed", choices=("fixed", "dynamic", "auto")),
    "loss_scale": Key("float", 1.0, _at_least(1.0)),  # MindCV: "Loss scale cannot be less than 1.0!"
    # an early MindCV key (gone from 0.3.0's config.py): refused rather than half-honoured
    "dynamic_loss_scale": Key("bool", False, lambda v: "is not a MindCV 0.3.0 key; use loss_scale_type: dynamic "
                              "with drop_overflow_update: true" if v else None),
    "drop_overflow_update": Key("bool", False),
    "use_nesterov": Key("bool", False),
    # MindCV <= 0.2's key, which 0.3.0 replaced by weight_decay_filter: accepted alone (true: norm_and_bias, false:
    # disable), refused beside weight_decay_filter
    "filter_bias_and_bn": Key("bool", None, nullable=True),
    # MindCV 0.3.0's weight-decay filter (config.py choices; mindcv/optim/optim_factory.py create_optimizer,
    # mindspore-lab/mindcv tag v0.3.0, commit f9478c6): disable, auto or norm_and_bias, exactly as MindCV. Null (with
    # no filter_bias_and_bn) is MindCV's default, disable: every parameter decays.
    "weight_decay_filter": Key("str", None, nullable=True, choices=WEIGHT_DECAY_FILTERS),
    # MindCV 0.3.0's layer-wise lr decay (param_groups_layer_decay, same commit) needs a layer map the model gives
    # through group_matcher or pretrained_cfg['classifier']; its InceptionV4 has neither, so MindCV puts every
    # parameter in one layer whose lr scale is layer_decay ** 0 = 1: the value would be ignored. Refused unless null.
    "layer_decay": Key("float", None, lambda v: (
        f"is not supported (got {v}): MindCV 0.3.0 has no layer map for InceptionV4, so every parameter is one "
        f"layer at lr scale 1 and the value is ignored; its weight-decay grouping equals "
        f"weight_decay_filter: norm_and_bias"), nullable=True),
    # MindCV 0.3.0's create_optimizer passes eps to RMSProp alone (mindcv/optim/optim_factory.py)
    "eps": Key("float", 1e-10, _inert(1e-10, "opt: rmsprop, which incv4 refuses")),
    # scheduler
    "scheduler": Key("str", "cosine_decay", _supported(SCHEDULERS), choices=(
        "constant", "cosine_decay", "exponential_decay", "step_decay", "multi_step_decay",
        "warmup_cosine_decay", "one_cycle", "cyclic", "polynomial_decay")),
    "lr": Key("float", 0.001, _positive),
    "min_lr": Key("float", 1e-6, _at_least(0)),
    "warmup_epochs": Key("int", 3, _at_least(0)),
    "warmup_factor": Key("float", 0.0, _at_least(0)),
    "decay_epochs": Key("int", 100, _at_least(0)),
    "decay_rate": Key("float", 0.9, _positive),
    "multi_step_decay_milestones": Key("list", [30, 60, 90]),
    "lr_epoch_stair": Key("bool", False),
    "num_cycles": Key("int", 1, _positive),
    "cycle_decay": Key("float", 1.0, _positive),
    # loss
    "loss": Key("str", "CE", _supported(LOSSES), choices=("CE", "BCE")),
    "label_smoothing": Key("float", 0.0, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {v}"),
    "aux_factor": Key("float", 0.0, _at_least(0)),
    "reduction": Key("str", "mean", choices=("mean", "sum", "none")),
    # incv4's own keys (not MindCV's); defaults keep MindCV's behaviour
    "bn_momentum": Key("float", 0.9997, lambda v: None if 0 < v < 1 else f"must be in (0, 1), got {v}",
                       help="BatchNorm moving-average momentum (MindCV: 0.9997)"),
    "bn_beta_init": Key("float", 0.0, lambda v: None if -10 <= v <= 10 else f"must be in [-10, 10], got {v}",
                        help="initial BatchNorm beta (MindCV: 0); 1 lets short from-scratch runs learn"),
    "bn_recalibrate_steps": Key("int", 0, _at_least(0),
                                help="re-estimate BatchNorm statistics over this many training batches before eval"),
    "max_nonfinite_steps": Key("int", 10, _positive,
                               help="stop after this many non-finite losses in a row"),
    # MindCV's train.py/validate.py for MindSpore 2.3 (the seed's results table) set jit_level O2 in graph mode
    "jit_level": Key("str", "O2", choices=("O0", "O1", "O2"),
                     help="MindSpore's jit_config jit_level in graph mode on Ascend (MindCV: O2)"),
}

# Keys MindCV accepts for ModelArts or downloads that mean nothing here; accepted so MindCV YAMLs load unchanged.
IGNORED_KEYS = {"enable_modelarts", "multi_data_url", "data_url", "ckpt_url", "train_url", "config"}

# Reference global batch of the published recipe: 8 cards x batch_size (MindCV's published InceptionV4 run).
REFERENCE_DEVICES = 8


def _type_name(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "pair": "a list of two numbers", "list": "a list of numbers"}[kind]


# A decimal number as MindCV's float() reads it. YAML 1.1 (PyYAML) reads `1e-3` and `5e-5` as strings: it wants a dot
# and a signed exponent. Only plain decimal numbers are taken, never nan, inf or `1_000`.
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number_text(value: Any) -> Any:
    """A string that is a plain decimal number, as a float (MindCV accepts `lr: 1e-3`); anything else unchanged."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


def _coerce(name: str, key: Key, value: Any) -> Any:
    if value is None:
        if key.nullable or key.default is None:
            return None
        raise RecipeError(f"recipe key '{name}': must be {_type_name(key.kind)}, got null")
    kind = key.kind
    ok = False
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        value = _number_text(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind in ("pair", "list"):
        value = [_number_text(x) for x in value] if isinstance(value, (list, tuple)) else value
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        if ok and kind == "pair":
            ok = len(value) == 2
        if ok:
            value = list(value)
    if not ok:
        raise RecipeError(f"recipe key '{name}': must be {_type_name(kind)}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        raise RecipeError(f"recipe key '{name}': must be one of {', '.join(map(str, key.choices))}; got {value!r}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise RecipeError(f"recipe key '{name}': {problem}")
    return value


def _check_defaults(full: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """A MindCV default incv4 does not implement (opt: adam) is refused as if the recipe had written it."""
    for name, key in KEYS.items():
        if name in given or key.check is None or full[name] is None:
            continue
        problem = key.check(full[name])
        if problem:
            raise RecipeError(f"recipe key '{name}': {problem}; it is MindCV's default when the key is left out")


def _unknown_key_error(name: str) -> RecipeError:
    close = difflib.get_close_matches(name, list(KEYS), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return RecipeError(f"recipe key '{name}': unknown key{hint}")


def _cross_checks(values: Mapping[str, Any]) -> None:
    if values["warmup_epochs"] > values["epoch_size"]:
        raise RecipeError(f"recipe key 'warmup_epochs': {values['warmup_epochs']} is more than "
                          f"epoch_size {values['epoch_size']}")
    if values["min_lr"] > values["lr"]:
        raise RecipeError(f"recipe key 'min_lr': {values['min_lr']} is more than lr {values['lr']}")
    if len(values["mean"]) != values["in_channels"] or len(values["std"]) != values["in_channels"]:
        raise RecipeError(f"recipe key 'mean': mean and std need one value per input channel "
                          f"({values['in_channels']})")
    if any(s <= 0 for s in values["std"]):
        raise RecipeError("recipe key 'std': every value must be > 0")
    _train_step_checks(values)
    _schedule_checks(values)
    if values["opt"] == "sgd" and values["use_nesterov"] and values["momentum"] <= 0:
        raise RecipeError("recipe key 'use_nesterov': Nesterov needs momentum > 0")
    if values["weight_decay_filter"] is not None and values["filter_bias_and_bn"] is not None:
        raise RecipeError("recipe key 'filter_bias_and_bn': MindCV 0.3.0 replaced it by weight_decay_filter; give "
                          "weight_decay_filter alone")
    if values["resume_opt"] and not values["ckpt_path"]:
        raise RecipeError("recipe key 'resume_opt': needs ckpt_path (the checkpoint to resume the optimizer from)")
    if values["ckpt_save_policy"] == "top_k" and not values["val_while_train"]:
        raise RecipeError("recipe key 'ckpt_save_policy': top_k keeps the checkpoints with the best top-1 and needs "
                          "val_while_train: true")


def _train_step_checks(values: Mapping[str, Any]) -> None:
    """MindCV's create_trainer and create_model refusals (mindcv/utils/trainer_factory.py, models/), and one of
    incv4's."""
    customised = values["ema"] or values["clip_grad"] or values["gradient_accumulation_steps"] > 1
    if values["loss_scale_type"] == "dynamic" and not values["drop_overflow_update"]:
        raise RecipeError("recipe key 'loss_scale_type': dynamic always drops the update of an overflowing step "
                          "(MindCV); set drop_overflow_update: true")
    if values["loss_scale_type"] == "auto" and customised:
        raise RecipeError("recipe key 'loss_scale_type': auto is not available with ema, clip_grad or "
                          "gradient_accumulation_steps > 1 (MindCV's train step takes fixed or dynamic)")
    if values["pretrained"] and values["ckpt_path"]:
        raise RecipeError("recipe key 'pretrained': MindCV takes either pretrained or ckpt_path, not both")
    if values["pretrained"] and values["in_channels"] not in (1, 3):
        raise RecipeError(f"recipe key 'in_channels': the pretrained weights take 3 channels (or 1, summed), "
                          f"got {values['in_channels']}")
    if values["ema"] and values["bn_recalibrate_steps"] > 0:
        raise RecipeError("recipe key 'bn_recalibrate_steps': re-estimates the trained weights' statistics, but "
                          "with ema the EMA weights are evaluated; use one of them")


def _schedule_checks(values: Mapping[str, Any]) -> None:
    """What MindCV's schedules need to be defined (mindcv/scheduler/dynamic_lr.py divides by these)."""
    name = values["scheduler"]
    if name in ("step_decay", "cosine_decay", "warmup_cosine_decay") and values["decay_epochs"] < 1:
        raise RecipeError(f"recipe key 'decay_epochs': {name} needs decay_epochs >= 1")
    if name == "polynomial_decay" and values["epoch_size"] <= values["warmup_epochs"]:
        raise RecipeError("recipe key 'warmup_epochs': polynomial_decay needs epochs left after the warm-up")


class Recipe(dict):
    """A validated recipe: every MindCV key present, with attribute access (`recipe.batch_size`)."""

    name: str = "recipe"
    given: frozenset = frozenset()  # the keys the recipe, --set or a flag gave (not defaults)

    def __getattr__(self, item):
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None

    def to_yaml(self) -> str:
        return yaml.dump(dict(self), Dumper=SAFE_DUMPER, sort_keys=False)

    @property
    def reference_global_batch(self) -> int:
        return REFERENCE_DEVICES * self["batch_size"]


def validate(raw: Mapping[str, Any], name: str = "recipe") -> Recipe:
    """Check a raw mapping of recipe keys and fill in MindCV's defaults."""
    if not isinstance(raw, Mapping):
        raise RecipeError(f"recipe '{name}': must be a mapping of keys to values, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            raise RecipeError(f"recipe key {k!r}: keys must be strings")
        if k in IGNORED_KEYS:
            continue
        if k not in KEYS:
            raise _unknown_key_error(k)
        values[k] = _coerce(k, KEYS[k], v)
    full = {k: (values[k] if k in values else _default(key)) for k, key in KEYS.items()}
    _cross_checks(full)
    _check_defaults(full, values)  # after the given keys' problems
    recipe = Recipe(full)
    recipe.name, recipe.given = name, frozenset(values)
    return recipe


def check_world_size(recipe: Recipe, world_size: int) -> None:
    """`distribute` against the number of workers, before any starts. MindCV's `distribute: False` is a lone
    process (under msrun, N separate runs of the same recipe): refused with more than one worker. `True` with one
    worker is MindCV's init() with a single rank, which trains as one device. Left out, the worker count decides
    (the launcher sets it true for more than one worker)."""
    if world_size > 1 and not recipe["distribute"] and "distribute" in recipe.given:
        raise RecipeError(f"recipe key 'distribute': False means one worker, but {world_size} workers were asked "
                          f"for (set distribute: True, or run one worker)")


def _default(key: Key):
    return list(key.default) if isinstance(key.default, list) else key.default


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from `--set`, the value read as YAML (so `true`, `3`, `[0.1, 1.0]` get their types)."""
    if "=" not in text:
        raise RecipeError(f"--set '{text}': expected key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if key not in KEYS and key not in IGNORED_KEYS:
        raise _unknown_key_error(key)
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as err:
        raise RecipeError(f"recipe key '{key}': value {raw!r} is not valid YAML ({_first_line(err)})") from None
    except RecursionError:
        raise RecipeError(f"recipe key '{key}': value is nested too deeply") from None
    return key, value


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def read_yaml(path: str) -> dict:
    """Load a recipe file (safely) into a raw mapping, with one-line errors for missing or broken files."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise RecipeError(f"recipe file '{path}': not found") from None
    except UnicodeDecodeError as err:
        raise RecipeError(f"recipe file '{path}': not a text file (invalid UTF-8 at byte {err.start})") from None
    except OSError as err:
        raise RecipeError(f"recipe file '{path}': cannot be read ({err.strerror})") from None
    return parse_yaml_text(text, path)


def parse_yaml_text(text: str, name: str) -> dict:
    nul = text.find("\0")
    if nul >= 0:  # PyYAML would call it "not valid YAML"; it is not text at all
        raise RecipeError(f"recipe file '{name}': not a text file (NUL byte at character {nul})")
    try:
        raw = _load_yaml(text)
    except _DuplicateKey as err:
        raise RecipeError(f"recipe file '{name}': key {err.key!r} is given twice (lines {err.first_line} and "
                          f"{err.problem_mark.line + 1})") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a bad explicit tag such as `!!float abc`
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"recipe file '{name}': not valid YAML{where}") from None
    except RecursionError:
        raise RecipeError(f"recipe file '{name}': nested too deeply to be a recipe") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file '{name}': must be a mapping of keys to values")
    return raw


def load(path: Optional[str] = None, overrides: Iterable[str] = (), **explicit: Any) -> Recipe:
    """Load a recipe file (or the defaults), apply `--set key=value` overrides, then explicit keyword overrides
    (from dedicated CLI flags such as --data-dir; None means "not given"), and validate the result."""
    raw = read_yaml(path) if path else {}
    for text in overrides:
        key, value = parse_override(text)
        raw[key] = value
    for key, value in explicit.items():
        if value is not None:
            raw[key] = value
    name = os.path.splitext(os.path.basename(path))[0] if path else "defaults"
    return validate(raw, name=name)


def require_data_dir(recipe: Recipe, splits: Iterable[str]) -> None:
    """Fail with one line before training when the data directory or a split is missing, or when the splits' class
    folders disagree with each other or with num_classes (which would make labels silently wrong)."""
    from incv4.trainer.data.check import check_class_folders  # lazy: listing data is not a recipe's concern

    splits = list(splits)
    data_dir = recipe["data_dir"]
    if not data_dir or not os.path.isdir(data_dir):
        raise RecipeError(f"recipe key 'data_dir': directory '{data_dir}' does not exist "
                          f"(give --data-dir or set data_dir)")
    for split in splits:
        path = os.path.join(data_dir, split)
        if not os.path.isdir(path):
            raise RecipeError(f"recipe key 'data_dir': '{data_dir}' has no '{split}/' split folder")
    check_class_folders(data_dir, splits, recipe["train_split"], recipe["num_classes"])


def shipped_path(name: str) -> str:
    """Path of a recipe shipped with the package, e.g. `shipped_path('inception_v4_ascend.yaml')`."""
    return str(resources.files("incv4.configs").joinpath(name))
