"""`weight_decay_filter` and `layer_decay`: MindCV 0.3.0's create_optimizer as the oracle, and one-line refusals.

The oracle is mindcv==0.3.0 (the dev extra; its mindcv/optim/optim_factory.py is the file at mindspore-lab/mindcv
tag v0.3.0, commit f9478c626cddfe81c1b078c5884be78d1bb486b4). Nothing downloads.

Cost (2 cores): InceptionV4 is built once (~2 s) and its optimizers in PyNative mode; the whole file takes ~20 s.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from incv4.trainer import recipe as recipes
from incv4.trainer.recipe import RecipeError

ASCEND = recipes.shipped_path("inception_v4_ascend.yaml")
FILTERS = ("disable", "auto", "norm_and_bias")
ORACLE = "mindcv==0.3.0 (the dev extra) is the weight-decay grouping oracle"


def _recipe(path=ASCEND, **keys):
    return recipes.load(path, **keys)


def _ms():
    return pytest.importorskip("mindspore", reason="the optimizer tests need MindSpore (pip install -e '.[train]')")


@pytest.fixture(scope="module")
def inception():
    _ms()
    from incv4.trainer.model.inception_v4 import inception_v4

    return inception_v4(num_classes=10)


def _decay(opt) -> dict:
    """Each optimizer parameter's effective weight decay (0 where MindSpore's decay flag is off)."""
    names = [p.name for p in opt.parameters]
    if not opt.exec_weight_decay:
        return dict.fromkeys(names, 0.0)
    if opt.is_group:
        values = [float(w.asnumpy()) for w in opt.weight_decay]
    else:
        values = [float(opt.weight_decay.asnumpy())] * len(names)
    return {n: (v if flag else 0.0) for n, v, flag in zip(names, values, opt.decay_flags)}


def _theirs(network, r, lrs, **extra):
    factory = pytest.importorskip("mindcv.optim.optim_factory", reason=ORACLE)
    from incv4.trainer.model import optim

    # as MindCV's train.py calls it (the network itself, so model hooks such as no_weight_decay apply)
    args = dict(opt=r["opt"], lr=lrs, weight_decay=r["weight_decay"], momentum=r["momentum"],
                nesterov=r["use_nesterov"], weight_decay_filter=r["weight_decay_filter"], layer_decay=None,
                loss_scale=optim.optimizer_loss_scale(r))
    args.update(extra)
    return factory.create_optimizer(network, **args)


# ------------------------------------------------------------------------------------------------------------
# which parameters decay: MindCV's grouping on the real network

@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_decays_what_mindcv_decays_on_inception_v4(pynative, inception, name):
    from incv4.trainer.model import optim

    r = _recipe(weight_decay_filter=name)  # the published recipe: momentum, weight_decay 4e-5, loss_scale 1024
    lrs = optim.create_lr_schedule(r, 2)
    ours, theirs = optim.create_optimizer(inception, r, lrs), _theirs(inception, r, lrs)
    assert type(ours) is type(theirs) and ours.is_group == theirs.is_group == (name != "auto")
    assert [p.name for p in ours.parameters] == [p.name for p in theirs.parameters] \
        == [p.name for p in inception.trainable_params()]
    assert _decay(ours) == _decay(theirs)
    decayed = {n for n, w in _decay(ours).items() if w > 0}
    weights = {n for n in _decay(ours) if n.endswith("conv.weight")} | {"classifier.weight"}
    expected = {"disable": set(_decay(ours)),  # all 449, BatchNorm gamma/beta and the classifier bias too
                "auto": weights | {"classifier.bias"},  # MindSpore's own filter spares only gamma and beta
                "norm_and_bias": weights}[name]
    assert decayed == expected
    assert len(decayed) == {"disable": 449, "auto": 151, "norm_and_bias": 150}[name]


@pytest.mark.parametrize("filter_bias_and_bn, same_as", [(True, "norm_and_bias"), (False, "disable"),
                                                        (None, "disable")])
def test_null_filter_follows_filter_bias_and_bn_else_mindcvs_default(pynative, inception, filter_bias_and_bn,
                                                                      same_as):
    from incv4.trainer.model import optim

    r = _recipe(filter_bias_and_bn=filter_bias_and_bn)
    assert r.weight_decay_filter is None and optim.weight_decay_filter(r) == same_as
    lrs = optim.create_lr_schedule(r, 2)
    ours = optim.create_optimizer(inception, r, lrs)
    theirs = _theirs(inception, r, lrs, weight_decay_filter=same_as)
    assert _decay(ours) == _decay(theirs)


def test_groups_equal_mindcvs_init_group_params(inception):
    factory = pytest.importorskip("mindcv.optim.optim_factory", reason=ORACLE)
    from incv4.trainer.model import optim

    params = inception.trainable_params()
    for name in ("disable", "norm_and_bias"):
        for exempt in ([], ["classifier.weight"]):  # a model's no_weight_decay() names
            ours = optim.init_group_params(params, 4e-5, name, exempt)
            theirs = factory.init_group_params(params, 4e-5, name, exempt)
            assert [g.get("weight_decay") for g in ours] == [g.get("weight_decay") for g in theirs]
            assert [[p.name for p in g.get("params", g.get("order_params"))] for g in ours] \
                == [[p.name for p in g.get("params", g.get("order_params"))] for g in theirs]


# ------------------------------------------------------------------------------------------------------------
# the same steps as MindCV's optimizer (auto hands weight decay to MindSpore's own filter)

def _tiny():
    _ms()
    from tiny_nets import TinyDenseBn

    return TinyDenseBn()


def _values(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _step(net, optimizer, grads):
    ms = _ms()
    optimizer(tuple(ms.Tensor(g) for g in grads))
    return _values(net)


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("opt", ["momentum", "sgd"])
def test_steps_equal_mindcvs_optimizer(pynative, name, opt):
    ms = _ms()
    from incv4.trainer.model import optim

    r = _recipe(None, opt=opt, momentum=0.9, weight_decay=0.01, loss_scale=8.0, use_nesterov=True,
                weight_decay_filter=name)
    ms.set_seed(0)
    ours_net, theirs_net = _tiny(), _tiny()
    for mine, other in zip(ours_net.get_parameters(), theirs_net.get_parameters()):
        other.set_data(ms.Tensor(mine.asnumpy().copy()))
    lrs = [0.1, 0.05, 0.02]
    ours, theirs = optim.create_optimizer(ours_net, r, lrs), _theirs(theirs_net, r, lrs)
    rng = np.random.RandomState(0)
    for _ in range(3):
        grads = [rng.randn(*p.shape).astype(np.float32) for p in ours_net.trainable_params()]
        a, b = _step(ours_net, ours, grads), _step(theirs_net, theirs, grads)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_auto_decays_the_bias_but_not_gamma_and_beta(pynative):
    """With zero gradients only weight decay moves parameters."""
    from incv4.trainer.model import optim

    net = _tiny()
    r = _recipe(None, opt="momentum", weight_decay=0.1, weight_decay_filter="auto")
    before = _values(net)
    after = _step(net, optim.create_optimizer(net, r, 0.5), [np.zeros_like(v) for v in before.values()])
    for name in ("layers.0.weight", "layers.0.bias"):
        np.testing.assert_allclose(after[name], before[name] * (1 - 0.5 * 0.1), rtol=1e-6)
    for name in ("layers.1.gamma", "layers.1.beta"):
        np.testing.assert_array_equal(after[name], before[name])


# ------------------------------------------------------------------------------------------------------------
# layer_decay: what MindCV does with InceptionV4, hence the refusal

@pytest.mark.parametrize("layer_decay", [0.5, 0.75])
def test_mindcv_layer_decay_ignores_its_value_on_inception_v4(inception, layer_decay):
    """MindCV's param_groups_layer_decay finds no layer map on InceptionV4 (no group_matcher, no
    pretrained_cfg): one layer at lr scale layer_decay ** 0 = 1, whatever the value, and the 1-D parameters
    undecayed, the grouping of norm_and_bias. So incv4 refuses the key instead of accepting and ignoring it."""
    factory = pytest.importorskip("mindcv.optim.optim_factory", reason=ORACLE)
    from incv4.trainer.model import optim

    lrs = [0.1, 0.05, 0.02]
    groups = factory.param_groups_layer_decay(inception, lr=lrs, weight_decay=4e-5, layer_decay=layer_decay)
    assert all(g["lr"] == lrs for g in groups)  # no layer-wise decay at all
    decayed = {p.name for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    ours = optim.init_group_params(inception.trainable_params(), 4e-5, "norm_and_bias")
    assert decayed == {p.name for p in ours[0]["params"]}


# ------------------------------------------------------------------------------------------------------------
# recipe: MindCV's defaults and choices, refusals in one line

def test_defaults():
    r = _recipe()
    assert r.layer_decay is None  # MindCV's default
    assert r.weight_decay_filter is None and r.filter_bias_and_bn is None  # MindCV 0.3.0's default: disable
    assert _recipe(weight_decay_filter="auto").weight_decay_filter == "auto"
    assert recipes.load(ASCEND, ["layer_decay=null", "weight_decay_filter=null"]).layer_decay is None


@pytest.mark.parametrize("override, message", [
    ("weight_decay_filter=bogus",
     "recipe key 'weight_decay_filter': must be one of disable, auto, norm_and_bias; got 'bogus'"),
    ("weight_decay_filter=true", "recipe key 'weight_decay_filter': must be a string, got True"),
    ("layer_decay=0.75",
     "recipe key 'layer_decay': is not supported (got 0.75): MindCV 0.3.0 has no layer map for InceptionV4, so "
     "every parameter is one layer at lr scale 1 and the value is ignored; its weight-decay grouping equals "
     "weight_decay_filter: norm_and_bias"),
    ("layer_decay=fast", "recipe key 'layer_decay': must be a number, got 'fast'"),
])
def test_bad_values_are_one_line_naming_the_key(override, message):
    with pytest.raises(RecipeError) as info:
        recipes.load(ASCEND, [override])
    assert str(info.value) == message and "\n" not in message


def test_filter_bias_and_bn_beside_a_filter_is_refused(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("weight_decay_filter: norm_and_bias\nfilter_bias_and_bn: true\n")
    with pytest.raises(RecipeError) as info:
        recipes.load(str(path))
    assert str(info.value) == ("recipe key 'filter_bias_and_bn': MindCV 0.3.0 replaced it by weight_decay_filter; "
                               "give weight_decay_filter alone")
    with pytest.raises(RecipeError, match="^recipe key 'filter_bias_and_bn': "):
        recipes.load(ASCEND, ["filter_bias_and_bn=false", "weight_decay_filter=disable"])
    # either alone is fine, and a validated recipe validates again
    assert recipes.load(ASCEND, ["filter_bias_and_bn=false"]).filter_bias_and_bn is False
    legacy = recipes.load(ASCEND, ["filter_bias_and_bn=true"])
    assert recipes.validate(yaml.safe_load(legacy.to_yaml())) == legacy
    for name in FILTERS:
        r = recipes.load(ASCEND, [f"weight_decay_filter={name}"])
        assert recipes.validate(yaml.safe_load(r.to_yaml())) == r


def test_train_refuses_layer_decay_with_exit_2_before_any_work(repo_root, tmp_path):
    from incv4.operator.cli import main

    result = CliRunner().invoke(main, ["train", "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"),
                                       "--data-dir", str(tmp_path), "--set", "layer_decay=0.75", "--workers", "1"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: recipe key 'layer_decay': is not supported")
