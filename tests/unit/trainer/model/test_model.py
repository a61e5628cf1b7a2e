"""InceptionV4: parameter names, shapes and counts (MindCV's), forward passes at the smallest and the published
resolution, and MindCV's own `inception_v4` as an oracle (names, shapes, outputs, checkpoint loading).

Cost (2 cores): building the network ~2 s; PyNative forwards at batch 1 ~2-3 s each; the graph-mode forward
compiles for ~15 s; the whole file ~45 s.
"""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore", reason="the model tests need MindSpore (pip install -e '.[train]')")

from incv4.trainer.model import inception_v4 as model_mod  # noqa: E402
from incv4.trainer.model.inception_v4 import CLASSIFIER_PARAMS, MIN_IMAGE_SIZE, inception_v4  # noqa: E402

TOTAL_PARAMS = 42_742_984  # including BatchNorm moving statistics (MindCV's released checkpoint)
TRAINABLE_PARAMS = 42_679_816


@pytest.fixture(scope="module")
def net():
    return inception_v4()


def _shapes(cell):
    return {p.name: tuple(p.shape) for p in cell.get_parameters()}


def _image(size, seed=0):
    return ms.Tensor(np.random.RandomState(seed).randn(1, 3, size, size).astype(np.float32))


def test_parameter_counts(net):
    assert sum(int(np.prod(s)) for s in _shapes(net).values()) == TOTAL_PARAMS
    assert sum(p.size for p in net.trainable_params()) == TRAINABLE_PARAMS


def test_sample_of_names_and_shapes(net):
    shapes = _shapes(net)
    expected = {
        # the first conv (MindCV's first_conv) and its BatchNorm
        "features.0.conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "features.0.conv2d_1a_3x3.bn.gamma": (32,),
        "features.0.conv2d_1a_3x3.bn.moving_mean": (32,),
        "features.0.conv2d_1a_3x3.bn.moving_variance": (32,),
        # the stem's 7x1 branch, an InceptionA, ReductionA, an InceptionB's 1x7, ReductionB, an InceptionC fork
        "features.0.mixed_4a_branch_1.2.conv.weight": (64, 64, 7, 1),
        "features.1.branch_3.1.conv.weight": (96, 384, 1, 1),
        "features.5.branch_1.2.conv.weight": (256, 224, 3, 3),
        "features.12.branch_2.4.conv.weight": (256, 224, 1, 7),
        "features.13.branch_1.3.bn.beta": (320,),
        "features.16.branch_2_2.conv.weight": (256, 512, 3, 1),
        # the classifier
        "classifier.weight": (1000, 1536),
        "classifier.bias": (1000,),
    }
    assert {name: shapes.get(name) for name in expected} == expected
    assert not any(name.endswith("conv.bias") for name in shapes), "MindCV's convs have no bias"
    assert len(shapes) == 747


def test_classifier_params_name_the_head():
    small = inception_v4(num_classes=10)
    shapes = _shapes(small)
    assert [shapes[n] for n in CLASSIFIER_PARAMS] == [(10, 1536), (10,)]
    big = _shapes(inception_v4(num_classes=1000))
    differing = {n for n in shapes if shapes[n] != big[n]}
    assert differing == set(CLASSIFIER_PARAMS)


def test_bn_momentum_and_in_channels_reach_the_layers():
    net = inception_v4(num_classes=5, in_channels=1, bn_momentum=0.9)
    bns = [c for _, c in net.cells_and_names() if isinstance(c, ms.nn.BatchNorm2d)]
    assert len(bns) == 149
    # nn.BatchNorm2d stores the update weight of the new batch, 1 - momentum
    assert {round(1 - float(bn.momentum), 6) for bn in bns} == {0.9}
    assert {float(bn.eps) for bn in bns} == {0.001}
    assert _shapes(net)["features.0.conv2d_1a_3x3.conv.weight"] == (32, 1, 3, 3)
    default = [c for _, c in inception_v4(num_classes=5).cells_and_names() if isinstance(c, ms.nn.BatchNorm2d)]
    assert {round(1 - float(bn.momentum), 6) for bn in default} == {0.9997}


def test_bn_beta_init_sets_every_batchnorm_shift_and_nothing_else():
    ms.set_seed(3)
    shifted = inception_v4(num_classes=5, bn_beta_init=1.0)
    ms.set_seed(3)
    default = inception_v4(num_classes=5)
    betas = {p.name: p.asnumpy() for p in shifted.get_parameters() if p.name.endswith(".bn.beta")}
    assert len(betas) == 149
    assert all((b == 1.0).all() for b in betas.values())
    assert all((p.asnumpy() == 0.0).all() for p in default.get_parameters() if p.name.endswith(".bn.beta"))
    # everything else (weights, gamma, statistics) is the seeded default init
    others = {p.name: p.asnumpy() for p in default.get_parameters() if not p.name.endswith(".bn.beta")}
    for p in shifted.get_parameters():
        if p.name in others:
            assert (p.asnumpy() == others[p.name]).all(), p.name


@pytest.mark.parametrize("kwargs, message", [
    (dict(bn_beta_init=11.0), "bn_beta_init must be in [-10, 10]"),
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(in_channels=True), "in_channels must be a positive integer"),
    (dict(drop_rate=1.0), "drop_rate must be in [0, 1)"),
    (dict(bn_momentum=1.0), "bn_momentum must be in (0, 1)"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        inception_v4(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("size", [MIN_IMAGE_SIZE, 299])
def test_forward_pynative(pynative, size):
    net = inception_v4(num_classes=7)
    net.set_train(False)
    logits = net(_image(size)).asnumpy()
    assert logits.shape == (1, 7) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_forward_graph_mode_train_and_eval():
    """Graph mode is how training runs: compile the network once in train mode (dropout, batch statistics)."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = inception_v4(num_classes=3)
        net.set_train(True)
        x = ms.Tensor(np.random.RandomState(1).randn(2, 3, MIN_IMAGE_SIZE, MIN_IMAGE_SIZE).astype(np.float32))
        before = net.parameters_dict()["features.0.conv2d_1a_3x3.bn.moving_mean"].asnumpy().copy()
        logits = net(x).asnumpy()
        after = net.parameters_dict()["features.0.conv2d_1a_3x3.bn.moving_mean"].asnumpy()
    finally:
        ms.set_context(mode=previous)
    assert logits.shape == (2, 3) and np.isfinite(logits).all()
    # train mode updates the moving statistics (from zeros, by (1 - 0.9997) x the batch mean of a ReLU input)
    assert np.array_equal(before, np.zeros_like(before)) and np.abs(after).max() > 0


# ------------------------------------------------------------------------------------------------------------
# MindCV as the oracle (dev-only dependency; CI installs it with the dev extra)

@pytest.fixture(scope="module")
def mindcv_net():
    models = pytest.importorskip("mindcv.models", reason="mindcv==0.3.0 (the dev extra) is the oracle for names, "
                                                         "shapes and outputs")
    return models.inception_v4()


def test_names_and_shapes_equal_mindcv(net, mindcv_net):
    ours, theirs = _shapes(net), _shapes(mindcv_net)
    assert list(ours) == list(theirs)  # same order too, so checkpoints list identically
    assert ours == theirs
    assert [p.name for p in net.trainable_params()] == [p.name for p in mindcv_net.trainable_params()]


def test_same_function_as_mindcv(pynative, mindcv_net):
    """With MindCV's weights loaded, our network computes MindCV's logits (eval mode) and, in train mode without
    dropout, the same batch-statistics forward."""
    from mindcv.models import inception_v4 as mindcv_inception_v4

    theirs = mindcv_inception_v4(num_classes=10, drop_rate=0.0)
    ours = inception_v4(num_classes=10, drop_rate=0.0)
    not_loaded, unused = ms.load_param_into_net(ours, theirs.parameters_dict(), strict_load=True)
    assert not_loaded == [] and unused == []
    x = ms.Tensor(np.random.RandomState(3).randn(2, 3, 80, 80).astype(np.float32))
    for train in (False, True):
        theirs.set_train(train)
        ours.set_train(train)
        np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-5, atol=1e-5)


def test_graph_mode_equals_mindcv_with_lazy_inlined_blocks(mindcv_net):
    """Graph mode is where the repeated blocks' @lazy_inline(policy="front") acts (PyNative ignores it): compiled,
    our network still computes MindCV's (plain) network, in eval and in train mode, including the moving
    statistics' update."""
    from mindcv.models import inception_v4 as mindcv_inception_v4

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        theirs = mindcv_inception_v4(num_classes=5, drop_rate=0.0)
        ours = inception_v4(num_classes=5, drop_rate=0.0)
        ms.load_param_into_net(ours, theirs.parameters_dict(), strict_load=True)
        lazy = [c for _, c in ours.cells_and_names() if getattr(c, "cell_init_args", "").startswith("lazy_inline_")]
        assert len(lazy) == 14 and not any(c.no_inline for c in lazy)  # 4 A + 7 B + 3 C, inlined ("front")
        x = ms.Tensor(np.random.RandomState(4).randn(2, 3, MIN_IMAGE_SIZE, MIN_IMAGE_SIZE).astype(np.float32))
        for train in (False, True):
            theirs.set_train(train)
            ours.set_train(train)
            np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-5, atol=1e-5)
        moving = "features.14.branch_0.bn.moving_mean"  # inside an InceptionC, i.e. a lazily inlined block
        ours_moving = ours.parameters_dict()[moving].asnumpy()
        np.testing.assert_allclose(ours_moving, theirs.parameters_dict()[moving].asnumpy(), rtol=1e-6, atol=1e-7)
        assert np.abs(ours_moving).max() > 0
    finally:
        ms.set_context(mode=previous)


def test_mindcv_checkpoint_loads_by_name(tmp_path, net, mindcv_net):
    """A checkpoint saved from MindCV's model (as the released inception_v4-db9c45b3.ckpt is) loads into ours with
    nothing missing and nothing unexpected."""
    path = str(tmp_path / "mindcv_inception_v4.ckpt")
    ms.save_checkpoint(mindcv_net, path)
    params = ms.load_checkpoint(path)
    assert len(params) == 747
    not_loaded, unused = ms.load_param_into_net(net, params, strict_load=True)
    assert not_loaded == [] and unused == []
    name = "features.16.branch_3.1.conv.weight"
    np.testing.assert_array_equal(net.parameters_dict()[name].asnumpy(), params[name].asnumpy())


def test_module_exports():
    assert set(model_mod.__all__) >= {"inception_v4", "InceptionV4", "CLASSIFIER_PARAMS"}


def test_drop_path_rate_is_refused_as_mindcv_refuses_it():
    """MindCV's create_model hands a non-null drop_path_rate to InceptionV4, whose constructor takes none; the
    recipe refuses a non-zero value in one line before any work (0 and null mean none)."""
    factory = pytest.importorskip("mindcv.models", reason="mindcv==0.3.0 (the dev extra) is the oracle")
    from incv4.trainer import recipe as rc

    with pytest.raises(TypeError, match="drop_path_rate"):
        factory.create_model("inception_v4", num_classes=10, drop_path_rate=0.1)
    with pytest.raises(rc.RecipeError) as info:
        rc.validate({"drop_path_rate": 0.1})
    assert str(info.value) == ("recipe key 'drop_path_rate': must be 0 or null, got 0.1: MindCV's InceptionV4 has "
                               "no drop path (stochastic depth)")
    assert rc.validate({"drop_path_rate": 0, "opt": "momentum"}).drop_path_rate == 0.0
    assert rc.validate({"drop_path_rate": None, "opt": "momentum"}).drop_path_rate is None


def test_drop_rate_null_is_the_models_default_as_mindcvs_create_model():
    """A recipe's `drop_rate: null` reaches the model as None: MindCV's create_model drops None arguments, so its
    InceptionV4 keeps drop_rate 0.2; incv4's inception_v4 does the same."""
    factory = pytest.importorskip("mindcv.models", reason="mindcv==0.3.0 (the dev extra) is the oracle")
    from incv4.trainer import recipe as rc

    theirs = factory.create_model("inception_v4", num_classes=10, drop_rate=None)
    ours = inception_v4(num_classes=10, drop_rate=rc.load(rc.shipped_path("inception_v4_ascend.yaml"),
                                                          ["drop_rate=null"]).drop_rate)
    assert ours.dropout.p == theirs.dropout.p == 0.2
    assert inception_v4(num_classes=10, drop_rate=0.0).dropout.p == 0.0
