"""auto_augment strings (trainer/data/augment_policy.py): each part read as MindCV 0.3.0's rand_augment_transform
reads it (mindcv==0.3.0, the dev extra, is the oracle: mindcv/data/auto_augment.py at mindspore-lab/mindcv
f9478c6), or refused in one line by the recipe, before any work starts. Pure Python but the oracle; ~1 s."""
from __future__ import annotations

import pytest

from incv4.trainer import recipe as recipes
from incv4.trainer.data.augment_policy import LEVEL_DENOM, AugmentPolicy, parse

ASCEND = recipes.shipped_path("inception_v4_ascend.yaml")
ORACLE = "mindcv==0.3.0 (the dev extra) is the auto_augment oracle"


def _mindcv_randaug(text):
    """(ops per image, the level every op gets before its noise, increasing ops?, weighted choice?) as MindCV
    builds its RandAugment from `text`."""
    auto_augment = pytest.importorskip("mindcv.data.auto_augment", reason=ORACLE)
    transform = auto_augment.rand_augment_transform(text, {})
    op = transform.ops[0]
    level = max(0.0, min(op.magnitude, op.magnitude_max or auto_augment._LEVEL_DENOM))  # AugmentOp.__call__
    increasing = "SolarizeIncreasing" in [o.name for o in transform.ops]
    return transform.num_layers, level, increasing, transform.choice_weights is not None, op.magnitude_std


@pytest.mark.parametrize("text", ["randaug", "randaug-m9-mstd0.5", "randaug-m7-mstd0.5-inc1", "randaug-m9-n3",
                                  "randaug-n1-m4-inc0", "randaug-m12", "randaug-m9-mmax5", "randaug-m7-mmax0",
                                  "randaug-m10-mmax10", "randaug-m0-n0"])
def test_randaug_parts_mean_what_mindcv_reads(text):
    num_ops, level, _, weighted, magnitude_std = _mindcv_randaug(text)
    assert not weighted and magnitude_std == 0.5
    assert parse(text) == AugmentPolicy("randaug", num_ops=num_ops, level=int(level))
    assert recipes.load(ASCEND, [f"auto_augment={text}"]).auto_augment == text


def test_mindcv_reads_inc0_as_on_and_never_changes_its_noise():
    """Why incv4 accepts any -inc (MindCV's ops are then the increasing ones, which MindSpore's RandAugment runs)
    and only -mstd0.5 (MindCV's noise stays 0.5 whatever -mstd says; incv4 draws none)."""
    assert _mindcv_randaug("randaug-m9-inc0")[2] and _mindcv_randaug("randaug-m9-inc1")[2]
    assert not _mindcv_randaug("randaug-m9")[2]
    assert _mindcv_randaug("randaug-m9-mstd2")[4] == _mindcv_randaug("randaug-m9-mstd101")[4] == 0.5


@pytest.mark.parametrize("text, problem", [
    ("randaug-m9-w0", "-w0 (weighted op choice) is not supported: MindSpore's RandAugment picks its ops uniformly"),
    ("randaug-m9-mstd1", "-mstd1 is not supported: MindCV 0.3.0 keeps its magnitude noise at 0.5 whatever -mstd "
                         "says, and incv4 draws none; leave it out"),
    ("randaug-m12-mmax15", "level 12 (m12 under mmax15) is not supported: MindSpore's RandAugment stops at MindCV's "
                           "level 10, each op's full range"),
    ("randaug-m9-x3", "-x3 is not a part of MindCV's RandAugment"),
    ("randaug-m9-inc", "-inc has no number and MindCV ignores it; leave it out"),
    ("randaug-m9.5", "-m9.5 needs a whole number"),
    ("autoaug-mstd1", "-mstd1 is not supported: MindCV 0.3.0 keeps its magnitude noise at 0.5 whatever -mstd says, "
                      "and incv4 draws none; leave it out"),
    ("trivialaugwide-m20", "-m20 is not supported: MindSpore's TrivialAugmentWide samples levels over its own 31 "
                           "bins (use autoaug, randaug-mM-nN, trivialaugwide or null)"),
])
def test_parts_incv4_cannot_do_as_mindcv_are_one_line_at_validation(text, problem):
    with pytest.raises(recipes.RecipeError) as info:
        recipes.load(ASCEND, [f"auto_augment={text}"])
    assert str(info.value) == f"recipe key 'auto_augment': '{text}': {problem}"


@pytest.mark.parametrize("text", ["augmix", "3a", "autoaugr", "randaugx", "rand"])
def test_policies_incv4_does_not_run_are_refused(text):
    with pytest.raises(recipes.RecipeError) as info:
        recipes.load(ASCEND, [f"auto_augment={text}"])
    assert str(info.value) == (f"recipe key 'auto_augment': '{text}' is not supported (use autoaug, randaug-mM-nN, "
                               f"trivialaugwide or null)")


def test_the_policies_incv4_runs():
    assert parse("autoaug") == parse("autoaug-mstd0.5") == AugmentPolicy("autoaug")
    assert parse("trivialaugwide") == AugmentPolicy("trivialaugwide")
    assert parse(None) is None and parse("") is None
    assert parse("randaug").level == LEVEL_DENOM  # MindCV's default magnitude, its _LEVEL_DENOM


def test_randaug_builds_mindspore_randaugment_on_mindcvs_level_scale():
    pytest.importorskip("mindspore", reason="the transforms need MindSpore")
    from incv4.trainer.data.transforms import train_transforms

    recipe = recipes.load(ASCEND, ["auto_augment=randaug-m7-n3-mstd0.5-inc1"])
    randaug = [op for op in train_transforms(recipe) if type(op).__name__ == "RandAugment"]
    assert len(randaug) == 1
    op = randaug[0]
    # level 7 of MindCV's 10 is bin 7 of 11: 70% of each op's range, as MindCV's level / _LEVEL_DENOM
    assert (op.num_ops, op.magnitude, op.num_magnitude_bins) == (3, 7, LEVEL_DENOM + 1)
