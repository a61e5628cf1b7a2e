"""Recipes: the shipped Ascend recipe is MindCV's, and bad input is one line naming the key."""
import sys

import pytest
import yaml

from incv4.trainer import recipe as rc

ASCEND = rc.shipped_path("inception_v4_ascend.yaml")

PUBLISHED = dict(
    mode=0, distribute=True, num_parallel_workers=8, val_while_train=True, dataset="imagenet", batch_size=32,
    drop_remainder=True, image_resize=299, scale=[0.08, 1.0], ratio=[0.75, 1.333], hflip=0.5,
    interpolation="bilinear", auto_augment="autoaug", re_prob=0.25, crop_pct=0.875, model="inception_v4",
    num_classes=1000, keep_checkpoint_max=10, ckpt_save_dir="./ckpt", epoch_size=200, dataset_sink_mode=True,
    amp_level="O2", loss="CE", label_smoothing=0.1, scheduler="warmup_cosine_decay", lr=0.045, min_lr=0.0,
    decay_epochs=195, warmup_epochs=5, opt="momentum", momentum=0.9, weight_decay=0.00004, loss_scale=1024,
    use_nesterov=False,
    # MindCV's defaults for keys the recipe leaves out
    seed=42, drop_rate=0.2,
)


def test_ascend_recipe_has_every_published_value():
    recipe = rc.load(ASCEND)
    for key, value in PUBLISHED.items():
        assert recipe[key] == value, key
    assert recipe.name == "inception_v4_ascend"
    assert recipe.reference_global_batch == 256


def test_shipped_recipes_validate():
    for name in ("inception_v4_ascend.yaml", "inception_v4_cpu_demo.yaml"):
        rc.load(rc.shipped_path(name))


@pytest.mark.parametrize("override, message", [
    ("batch_size=0", "recipe key 'batch_size': must be > 0, got 0"),
    ("image_resize=64", "recipe key 'image_resize': must be >= 75, got 64"),
    ("hflip=1.5", "recipe key 'hflip': must be a probability in [0, 1], got 1.5"),
    ("warmup_epochs=201", "recipe key 'warmup_epochs': 201 is more than epoch_size 200"),
    ("batch_sise=32", "recipe key 'batch_sise': unknown key (did you mean 'batch_size'?)"),
    ("lr=fast", "recipe key 'lr': must be a number, got 'fast'"),
    ("distribute=maybe", "recipe key 'distribute': must be true or false, got 'maybe'"),
    ("scale=[0.5]", "recipe key 'scale': must be a list of two numbers, got [0.5]"),
    ("amp_level=O5", "recipe key 'amp_level': must be one of O0, O1, O2, O3; got 'O5'"),
    ("bn_beta_init=20", "recipe key 'bn_beta_init': must be in [-10, 10], got 20.0"),
    ("dataset_download=true", "recipe key 'dataset_download': is not supported: incv4 never downloads data"),
    # what MindCV's create_trainer refuses, and what incv4 does not implement: refused rather than silently ignored
    ("loss_scale_type=dynamic", "recipe key 'loss_scale_type': dynamic always drops the update of an overflowing "
                                "step (MindCV); set drop_overflow_update: true"),
    ("loss_scale=0.5", "recipe key 'loss_scale': must be >= 1.0, got 0.5"),
    ("gradient_accumulation_steps=0", "recipe key 'gradient_accumulation_steps': must be > 0, got 0"),
    ("dynamic_loss_scale=true", "recipe key 'dynamic_loss_scale': is not a MindCV 0.3.0 key; use loss_scale_type: "
                                "dynamic with drop_overflow_update: true"),
    ("amp_cast_list=[nn.Conv2d]", "recipe key 'amp_cast_list': must be a string, got ['nn.Conv2d']"),
    ("amp_cast_list='[nn.Conv2d]'", "recipe key 'amp_cast_list': is not supported: incv4 casts by amp_level only"),
    ("drop_path_rate=0.1", "recipe key 'drop_path_rate': must be 0 or null, got 0.1: MindCV's InceptionV4 has no "
                           "drop path (stochastic depth)"),
])
def test_bad_values_are_one_line_naming_the_key(override, message):
    _refused_in_one_line([override], message)


def _refused_in_one_line(overrides, message):
    with pytest.raises(rc.RecipeError) as info:
        rc.load(ASCEND, overrides)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_incv4_keys_default_to_mindcv_behaviour_and_the_demo_sets_its_own():
    published = rc.load(ASCEND)
    assert (published.bn_momentum, published.bn_beta_init, published.bn_recalibrate_steps) == (0.9997, 0.0, 0)
    demo = rc.load(rc.shipped_path("inception_v4_cpu_demo.yaml"))
    assert (demo.bn_momentum, demo.bn_beta_init) == (0.9, 1.0)


def test_overrides_are_yaml_typed():
    recipe = rc.load(ASCEND, ["batch_size=16", "scale=[0.5, 1.0]", "val_while_train=false", "auto_augment=null"])
    assert recipe.batch_size == 16 and recipe.scale == [0.5, 1.0]
    assert recipe.val_while_train is False and recipe.auto_augment is None


def test_explicit_flags_override_the_file(tmp_path):
    recipe = rc.load(ASCEND, data_dir=str(tmp_path), ckpt_path=None)
    assert recipe.data_dir == str(tmp_path) and recipe.ckpt_path == ""


def test_broken_and_missing_files(tmp_path):
    with pytest.raises(rc.RecipeError, match="recipe file '.*nope.yaml': not found"):
        rc.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: [1,\n")
    with pytest.raises(rc.RecipeError, match="not valid YAML at line"):
        rc.load(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(rc.RecipeError, match="must be a mapping"):
        rc.load(str(listy))


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("lr: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(rc.RecipeError, match="not valid YAML"):
        rc.load(str(evil))


def test_missing_data_dir_and_split(tmp_path):
    recipe = rc.load(ASCEND)
    with pytest.raises(rc.RecipeError, match="recipe key 'data_dir': directory '/path/to/imagenet' does not exist"):
        rc.require_data_dir(recipe, ["train", "val"])
    (tmp_path / "train").mkdir()
    recipe = rc.load(ASCEND, data_dir=str(tmp_path))
    with pytest.raises(rc.RecipeError, match="has no 'val/' split folder"):
        rc.require_data_dir(recipe, ["train", "val"])


def test_recipe_round_trips_through_yaml():
    recipe = rc.load(ASCEND)
    again = rc.validate(yaml.safe_load(recipe.to_yaml()))
    assert dict(again) == dict(recipe)


@pytest.mark.parametrize("overrides, message", [
    (["loss_scale_type=auto", "ema=true"], "recipe key 'loss_scale_type': auto is not available with ema, clip_grad "
     "or gradient_accumulation_steps > 1 (MindCV's train step takes fixed or dynamic)"),
    (["ema=true", "bn_recalibrate_steps=2"], "recipe key 'bn_recalibrate_steps': re-estimates the trained weights' "
     "statistics, but with ema the EMA weights are evaluated; use one of them"),
])
def test_train_step_combinations_mindcv_refuses(overrides, message):
    _refused_in_one_line(overrides, message)


def test_train_step_extras_are_accepted():
    recipe = rc.load(ASCEND, ["ema=true", "clip_grad=true", "gradient_accumulation_steps=4",
                              "loss_scale_type=dynamic", "drop_overflow_update=true"])
    assert (recipe.ema, recipe.clip_grad, recipe.gradient_accumulation_steps) == (True, True, 4)


@pytest.mark.parametrize("override, message", [
    # MindCV's choices incv4 does not build: refused here, not when MindSpore has started (trainer/model/optim.py)
    ("opt=adam", "recipe key 'opt': 'adam' is not supported by incv4 (supported: momentum, sgd)"),
    ("opt=lion", "recipe key 'opt': 'lion' is not supported by incv4 (supported: momentum, sgd)"),
    ("scheduler=one_cycle", "recipe key 'scheduler': 'one_cycle' is not supported by incv4 (supported: constant, "
                            "cosine_decay, warmup_cosine_decay, step_decay, multi_step_decay, exponential_decay, "
                            "polynomial_decay)"),
    ("scheduler=cyclic", "recipe key 'scheduler': 'cyclic' is not supported by incv4 (supported: constant, "
                         "cosine_decay, warmup_cosine_decay, step_decay, multi_step_decay, exponential_decay, "
                         "polynomial_decay)"),
    ("loss=BCE", "recipe key 'loss': 'BCE' is not supported by incv4 (supported: CE)"),
    ("decay_epochs=0", "recipe key 'decay_epochs': warmup_cosine_decay needs decay_epochs >= 1"),
    # what MindCV's data pipeline does that InceptionV4's recipe leaves off (trainer/data/pipeline.py)
    ("mixup=0.2", "recipe key 'mixup': 0.2 is not supported by incv4 (InceptionV4's recipe leaves it off); set it "
                  "to 0"),
    ("cutmix=1.0", "recipe key 'cutmix': 1.0 is not supported by incv4 (InceptionV4's recipe leaves it off); set it "
                   "to 0"),
    ("aug_repeats=3", "recipe key 'aug_repeats': 3 is not supported by incv4 (InceptionV4's recipe leaves it off); "
                      "set it to 0"),
    ("aug_splits=3", "recipe key 'aug_splits': 3 is not supported by incv4 (InceptionV4's recipe leaves it off); "
                     "set it to 0"),
    ("auto_augment=augmix", "recipe key 'auto_augment': 'augmix' is not supported (use autoaug, randaug-mM-nN, "
                            "trivialaugwide or null)"),
])
def test_what_incv4_does_not_build_is_refused_at_validation(override, message):
    _refused_in_one_line([override], message)


@pytest.mark.parametrize("overrides, message", [
    (["scheduler=polynomial_decay", "warmup_epochs=200"], "recipe key 'warmup_epochs': polynomial_decay needs epochs "
                                                          "left after the warm-up"),
    (["opt=sgd", "use_nesterov=true", "momentum=0"], "recipe key 'use_nesterov': Nesterov needs momentum > 0"),
])
def test_schedules_and_optimizers_mindspore_would_refuse_are_refused_at_validation(overrides, message):
    _refused_in_one_line(overrides, message)


def test_mindcvs_default_optimizer_adam_is_refused_when_left_out(tmp_path):
    path = tmp_path / "no_opt.yaml"
    path.write_text("batch_size: 8\n")
    with pytest.raises(rc.RecipeError) as info:
        rc.load(str(path))
    assert str(info.value) == ("recipe key 'opt': 'adam' is not supported by incv4 (supported: momentum, sgd); it is "
                               "MindCV's default when the key is left out")
    assert rc.load(str(path), ["opt=sgd"]).opt == "sgd"


MIXING = "mixup or cutmix > 0, which incv4 refuses"


@pytest.mark.parametrize("key, value, shown, depends_on, default", [
    # MindCV's create_loader hands cutmix_prob to its Mixup as the chance a batch is mixed
    ("cutmix_prob", "0.5", "0.5", MIXING, "1.0"),
    # incv4-only (timm's) keys: MindCV's create_loader fixes switch_prob 0.5 and mode batch
    ("mixup_prob", "0.5", "0.5", MIXING, "1.0"),
    ("mixup_switch_prob", "0.2", "0.2", MIXING, "0.5"),
    ("mixup_mode", "elem", "elem", MIXING, "batch"),
    ("mixup_off_epoch", "10", "10.0", MIXING, "0.0"),
    # MindCV 0.3.0's create_optimizer passes eps to RMSProp alone
    ("eps", "1e-8", "1e-08", "opt: rmsprop, which incv4 refuses", "1e-10"),
])
def test_keys_that_would_change_nothing_are_refused_naming_what_they_depend_on(key, value, shown, depends_on,
                                                                                default):
    _refused_in_one_line([f"{key}={value}"], f"recipe key '{key}': {shown} changes nothing: it only matters with "
                                             f"{depends_on}; leave it at {default}")
    assert rc.load(ASCEND, [f"{key}={default}"])[key] == rc.KEYS[key].default  # the default itself is fine


def test_drop_rate_null_is_the_models_default_as_in_mindcv():
    """MindCV's create_model drops None arguments, so InceptionV4 keeps its drop_rate default, 0.2."""
    assert rc.load(ASCEND, ["drop_rate=null"]).drop_rate is None
    assert rc.load(ASCEND).drop_rate == 0.2


def test_nesting_is_limited_by_the_recipe_not_by_pythons_recursion_limit():
    """MindSpore's import sets the recursion limit to 10000; the recipe's own limit holds whatever it is."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(10000)
    try:
        deepest = "a: " + "[" * (rc.MAX_NESTING - 1) + "]" * (rc.MAX_NESTING - 1)  # the mapping is 1 level
        assert rc.parse_yaml_text(deepest, "r")["a"] is not None
        for text in ("a: " + "[" * rc.MAX_NESTING + "]" * rc.MAX_NESTING, "[" * 5000 + "]" * 5000):
            with pytest.raises(rc.RecipeError, match="nested too deeply"):
                rc.parse_yaml_text(text, "r")
    finally:
        sys.setrecursionlimit(before)
