"""Learning-rate schedule, optimizer and loss: closed forms, MindCV as the oracle, and one-line recipe errors.

Cost (2 cores): schedules are pure Python (milliseconds); optimizer/loss tests run tiny cells in PyNative mode;
one test builds InceptionV4 (~2 s). The whole file takes ~15 s.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

ms = pytest.importorskip("mindspore", reason="the optimizer tests need MindSpore (pip install -e '.[train]')")

from tiny_nets import TinyDenseBn  # noqa: E402

from incv4.trainer.model import optim
from incv4.trainer import recipe as recipes  # noqa: E402

ASCEND = recipes.shipped_path("inception_v4_ascend.yaml")
DEMO = recipes.shipped_path("inception_v4_cpu_demo.yaml")


def _recipe(path=None, **keys):
    """MindCV's defaults (or the recipe at `path`) with `keys`; momentum SGD unless `opt` is given, as incv4 refuses
    MindCV's default, adam."""
    if path is None:
        keys.setdefault("opt", "momentum")
    return recipes.load(path, **keys)


# ------------------------------------------------------------------------------------------------------------
# schedule against the closed form

def test_ascend_schedule_closed_form():
    r = _recipe(ASCEND)  # lr 0.045, min_lr 0, warmup 5 epochs from 0, cosine over 195 epochs, 200 epochs
    spe = 10
    lrs = optim.create_lr_schedule(r, spe)
    lr, warmup, decay = 0.045, 5 * spe, 195 * spe
    assert len(lrs) == 200 * spe
    assert lrs[0] == 0.0  # warm-up starts at warmup_factor x lr
    assert lrs[1] == pytest.approx(lr / warmup, rel=1e-12)
    assert lrs[warmup - 1] == pytest.approx(lr * (warmup - 1) / warmup, rel=1e-12)  # end of warm-up
    assert lrs[warmup] == pytest.approx(lr, rel=1e-12)  # cosine starts at the peak
    assert lrs[warmup + decay // 2] == pytest.approx(lr / 2, rel=1e-12)  # mid-cosine
    last = 0.5 * lr * (1 + math.cos(math.pi * (decay - 1) / decay))
    assert lrs[-1] == pytest.approx(last, rel=1e-9)  # last step: one step short of min_lr
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # monotone decay


def test_warmup_factor_min_lr_and_tail_at_min_lr():
    r = _recipe(scheduler="warmup_cosine_decay", lr=0.1, min_lr=0.001, warmup_epochs=2, warmup_factor=0.01,
                decay_epochs=3, epoch_size=7)
    lrs = optim.create_lr_schedule(r, 4)
    assert len(lrs) == 28
    assert lrs[0] == pytest.approx(0.001, rel=1e-12)
    assert lrs[4] == pytest.approx(0.001 + 0.5 * (0.1 - 0.001), rel=1e-12)  # halfway through the warm-up
    assert lrs[8] == pytest.approx(0.1)
    assert lrs[8 + 6] == pytest.approx(0.001 + 0.5 * (0.1 - 0.001))  # mid-cosine
    assert lrs[20:] == [0.001] * 8  # 2 epochs after warm-up + decay stay at min_lr


def test_lr_epoch_stair_holds_lr_within_an_epoch():
    r = _recipe(scheduler="cosine_decay", lr=0.1, min_lr=0.0, warmup_epochs=1, warmup_factor=0.1,
                decay_epochs=4, epoch_size=5, lr_epoch_stair=True)
    lrs = optim.create_lr_schedule(r, 3)
    epochs = [lrs[i:i + 3] for i in range(0, 15, 3)]
    assert all(len(set(e)) == 1 for e in epochs)
    assert [e[0] for e in epochs] == pytest.approx([0.01, 0.1, 0.05 * (1 + math.cos(math.pi / 4)), 0.05,
                                                    0.05 * (1 + math.cos(3 * math.pi / 4))])


def test_cycles_restart_with_decayed_peak():
    r = _recipe(scheduler="cosine_decay", lr=0.1, min_lr=0.0, warmup_epochs=0, decay_epochs=2, num_cycles=2,
                cycle_decay=0.5, epoch_size=4)
    lrs = optim.create_lr_schedule(r, 2)
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.05)
    assert lrs[2] == pytest.approx(0.05) and lrs[6] == pytest.approx(0.025)


def test_constant_schedule_keeps_the_warmup():
    r = _recipe(scheduler="constant", lr=0.2, warmup_epochs=1, warmup_factor=0.0, epoch_size=3)
    lrs = optim.create_lr_schedule(r, 2)
    assert lrs == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2, 0.2])


def test_every_scheduler_the_recipe_accepts_is_built_here():
    assert set(optim.SCHEDULERS) == set(recipes.SCHEDULERS)
    for name in recipes.SCHEDULERS:
        assert len(optim.create_lr_schedule(_recipe(scheduler=name, epoch_size=4, warmup_epochs=1,
                                                    decay_epochs=2), 3)) == 12


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_steps_per_epoch_must_be_positive(steps):
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer"):
        optim.create_lr_schedule(_recipe(), steps)


# ------------------------------------------------------------------------------------------------------------
# schedule: MindCV's create_scheduler as the oracle, every step

def _mindcv_schedule(r, spe):
    scheduler = pytest.importorskip("mindcv.scheduler", reason="mindcv==0.3.0 (the dev extra) is the schedule "
                                                               "oracle")
    return scheduler.create_scheduler(
        spe, scheduler=r.scheduler, lr=r.lr, min_lr=r.min_lr, warmup_epochs=r.warmup_epochs,
        warmup_factor=r.warmup_factor, decay_epochs=r.decay_epochs, decay_rate=r.decay_rate,
        milestones=r.multi_step_decay_milestones, num_epochs=r.epoch_size, num_cycles=r.num_cycles,
        cycle_decay=r.cycle_decay, lr_epoch_stair=r.lr_epoch_stair)


@pytest.mark.parametrize("path, spe", [(ASCEND, 3), (ASCEND, 7), (DEMO, 1), (DEMO, 25)])
def test_shipped_recipes_equal_mindcv_at_every_step(path, spe):
    r = _recipe(path)
    assert optim.create_lr_schedule(r, spe) == _mindcv_schedule(r, spe)


@pytest.mark.parametrize("keys", [
    dict(scheduler="warmup_cosine_decay", lr_epoch_stair=True, warmup_factor=0.01),
    dict(scheduler="cosine_decay", num_cycles=3, cycle_decay=0.7, decay_epochs=2, epoch_size=9),
    dict(scheduler="cosine_decay", decay_epochs=20, epoch_size=9),  # decay longer than the run
    dict(scheduler="constant", warmup_epochs=2, warmup_factor=0.1),
    dict(scheduler="step_decay", decay_epochs=2, decay_rate=0.5),
    dict(scheduler="multi_step_decay", multi_step_decay_milestones=[2, 5], decay_rate=0.1),
    dict(scheduler="exponential_decay", decay_rate=0.8),
    dict(scheduler="exponential_decay", decay_rate=0.8, lr_epoch_stair=True),
    dict(scheduler="polynomial_decay", decay_rate=2.0),
    dict(scheduler="polynomial_decay", decay_rate=0.5, lr_epoch_stair=True, warmup_epochs=0),
])
def test_other_settings_equal_mindcv_at_every_step(keys):
    base = dict(lr=0.05, min_lr=0.001, warmup_epochs=1, decay_epochs=4, epoch_size=8)
    r = _recipe(**{**base, **keys})
    assert optim.create_lr_schedule(r, 5) == _mindcv_schedule(r, 5)


# ------------------------------------------------------------------------------------------------------------
# optimizer

def _values(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _step(net, optimizer, grads):
    optimizer(tuple(ms.Tensor(g) for g in grads))
    return _values(net)


def test_weight_decay_skips_bn_and_bias(pynative):
    """With zero gradients only weight decay moves parameters: conv/dense weights shrink, gamma/beta/bias do not."""
    net = TinyDenseBn()
    r = _recipe(opt="momentum", momentum=0.9, weight_decay=0.1, loss_scale=1.0, weight_decay_filter="norm_and_bias")
    before = _values(net)
    opt = optim.create_optimizer(net, r, 0.5)
    after = _step(net, opt, [np.zeros_like(v) for v in before.values()])
    np.testing.assert_allclose(after["layers.0.weight"], before["layers.0.weight"] * (1 - 0.5 * 0.1), rtol=1e-6)
    for name in ("layers.0.bias", "layers.1.gamma", "layers.1.beta"):
        np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize("keys", [{}, {"filter_bias_and_bn": False}, {"weight_decay_filter": "disable"}],
                         ids=["mindcv-0.3-default", "filter_bias_and_bn-false", "disable"])
def test_without_filter_everything_decays(pynative, keys):
    net = TinyDenseBn()
    r = _recipe(opt="momentum", weight_decay=0.1, **keys)
    before = _values(net)
    after = _step(net, optim.create_optimizer(net, r, 0.5), [np.zeros_like(v) for v in before.values()])
    for name in before:
        np.testing.assert_allclose(after[name], before[name] * (1 - 0.5 * 0.1), rtol=1e-6)


def test_fixed_loss_scale_divides_gradients_and_momentum_accumulates(pynative):
    net = TinyDenseBn()
    r = _recipe(opt="momentum", momentum=0.9, weight_decay=0.0, loss_scale=1024.0)
    before = _values(net)
    grads = [np.full_like(v, 1024.0) for v in before.values()]  # = gradient 1.0 once unscaled
    opt = optim.create_optimizer(net, r, [0.1, 0.2])
    first = _step(net, opt, grads)
    second = _step(net, opt, grads)
    for name in before:
        np.testing.assert_allclose(first[name], before[name] - 0.1, rtol=1e-6, atol=1e-6)
        # step 2: accumulation = 0.9 * 1 + 1 = 1.9, at the schedule's second lr
        np.testing.assert_allclose(second[name], first[name] - 0.2 * 1.9, rtol=1e-6, atol=1e-6)


def test_nesterov_and_sgd(pynative):
    net = TinyDenseBn()
    opt = optim.create_optimizer(net, _recipe(opt="momentum", use_nesterov=True), 0.1)
    assert isinstance(opt, ms.nn.Momentum) and opt.use_nesterov
    opt = optim.create_optimizer(net, _recipe(opt="sgd", use_nesterov=True, momentum=0.9), 0.1)
    assert isinstance(opt, ms.nn.SGD)


def test_inception_v4_groups(pynative):
    from incv4.trainer.model.inception_v4 import inception_v4

    net = inception_v4(num_classes=10)
    r = _recipe(ASCEND)
    opt = optim.create_optimizer(net, r, optim.create_lr_schedule(r, 2))
    assert opt.loss_scale == 1024.0
    decayed = {p.name for p, flag in zip(opt.parameters, opt.decay_flags) if flag}
    names = [p.name for p in net.trainable_params()]
    assert [p.name for p in opt.parameters] == names  # order_params keeps the network's order
    # the published recipe names no filter: MindCV 0.3.0's default, disable, decays all 449 parameters
    assert decayed == set(names) and len(names) == 449
    opt = optim.create_optimizer(net, _recipe(ASCEND, weight_decay_filter="norm_and_bias"),
                                 optim.create_lr_schedule(r, 2))
    decayed = {p.name for p, flag in zip(opt.parameters, opt.decay_flags) if flag}
    # norm_and_bias: 149 conv weights + the classifier weight; 149 x (gamma, beta) and the classifier bias do not
    assert decayed == {n for n in names if n.endswith("conv.weight")} | {"classifier.weight"}
    assert len(decayed) == 150 and len(names) - len(decayed) == 299


def test_inception_v4_groups_equal_mindcv(pynative):
    factory = pytest.importorskip("mindcv.optim.optim_factory", reason="mindcv==0.3.0 (the dev extra) is the "
                                                                       "grouping oracle")
    from incv4.trainer.model.inception_v4 import inception_v4

    params = inception_v4(num_classes=10).trainable_params()
    ours = optim.init_group_params(params, 4e-5, "norm_and_bias")
    theirs = factory.init_group_params(params, 4e-5, "norm_and_bias", [])
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert a.get("weight_decay") == b.get("weight_decay")
        key = "params" if "params" in a else "order_params"
        assert [p.name for p in a[key]] == [p.name for p in b[key]]


def test_same_step_as_mindcv_optimizer(pynative):
    optim_pkg = pytest.importorskip("mindcv.optim", reason="mindcv==0.3.0 (the dev extra) is the optimizer oracle")
    r = _recipe(opt="momentum", momentum=0.9, weight_decay=0.01, loss_scale=8.0, use_nesterov=True,
                weight_decay_filter="norm_and_bias")
    ms.set_seed(0)
    ours_net = TinyDenseBn()
    theirs_net = TinyDenseBn()
    for mine, other in zip(ours_net.get_parameters(), theirs_net.get_parameters()):
        other.set_data(ms.Tensor(mine.asnumpy().copy()))  # a copy: load_param_into_net would share the buffers
    lrs = [0.1, 0.05, 0.02]
    ours = optim.create_optimizer(ours_net, r, lrs)
    theirs = optim_pkg.create_optimizer(theirs_net.trainable_params(), opt="momentum", lr=lrs, weight_decay=0.01,
                                        momentum=0.9, nesterov=True, weight_decay_filter="norm_and_bias",
                                        loss_scale=8.0)
    rng = np.random.RandomState(0)
    for _ in range(3):
        grads = [rng.randn(*p.shape).astype(np.float32) for p in ours_net.trainable_params()]
        a, b = _step(ours_net, ours, grads), _step(theirs_net, theirs, grads)
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("keys, expected", [
    (dict(loss_scale=1024.0), 1024.0),
    (dict(loss_scale=1024.0, drop_overflow_update=True), 1.0),
    (dict(loss_scale=1024.0, loss_scale_type="dynamic", drop_overflow_update=True), 1.0),
    (dict(loss_scale=1024.0, dynamic_loss_scale=True), 1.0),
    # MindCV's rule for its train-step extras
    (dict(loss_scale=1024.0, ema=True), 1.0),
    (dict(loss_scale=1024.0, clip_grad=True), 1.0),
    (dict(loss_scale=1024.0, gradient_accumulation_steps=2), 1.0),
])
def test_optimizer_loss_scale_follows_mindcv(keys, expected):
    validated = {k: v for k, v in keys.items() if k != "dynamic_loss_scale"}  # an early MindCV key, refused
    assert optim.optimizer_loss_scale({**_recipe(**validated), **keys}) == expected


# ------------------------------------------------------------------------------------------------------------
# loss

def _smoothed_ce(logits, labels, eps):
    """Closed form: targets (1 - eps) one-hot + eps / C, against the log-softmax."""
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.full((n, c), eps / c)
    target[np.arange(n), labels] += 1 - eps
    return -(target * log_p).sum(axis=1)


@pytest.fixture
def logits_labels():
    rng = np.random.RandomState(7)
    return rng.randn(6, 10).astype(np.float32) * 3, rng.randint(0, 10, size=6).astype(np.int32)


def test_label_smoothing_loss_closed_form(pynative, logits_labels):
    logits, labels = logits_labels
    loss = optim.create_loss(_recipe(label_smoothing=0.1))
    value = loss(ms.Tensor(logits), ms.Tensor(labels)).asnumpy()
    assert value.shape == ()
    np.testing.assert_allclose(value, _smoothed_ce(logits, labels, 0.1).mean(), rtol=1e-5)
    summed = optim.create_loss(_recipe(label_smoothing=0.1, reduction="sum"))(ms.Tensor(logits), ms.Tensor(labels))
    np.testing.assert_allclose(summed.asnumpy(), _smoothed_ce(logits, labels, 0.1).sum(), rtol=1e-5)
    plain = optim.create_loss(_recipe())(ms.Tensor(logits), ms.Tensor(labels))
    np.testing.assert_allclose(plain.asnumpy(), _smoothed_ce(logits, labels, 0.0).mean(), rtol=1e-5)


def test_loss_with_aux_logits(pynative, logits_labels):
    logits, labels = logits_labels
    aux = logits[::-1].copy()
    loss = optim.create_loss(_recipe(label_smoothing=0.1, aux_factor=0.4))
    value = loss((ms.Tensor(logits), ms.Tensor(aux)), ms.Tensor(labels)).asnumpy()
    expected = _smoothed_ce(logits, labels, 0.1).mean() + 0.4 * _smoothed_ce(aux, labels, 0.1).mean()
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_loss_equals_mindcv(pynative, logits_labels):
    loss_pkg = pytest.importorskip("mindcv.loss", reason="mindcv==0.3.0 (the dev extra) is the loss oracle")
    logits, labels = logits_labels
    theirs = loss_pkg.create_loss("CE", label_smoothing=0.1, reduction="mean", aux_factor=0.0)
    ours = optim.create_loss(_recipe(ASCEND))
    np.testing.assert_allclose(ours(ms.Tensor(logits), ms.Tensor(labels)).asnumpy(),
                               theirs(ms.Tensor(logits), ms.Tensor(labels)).asnumpy(), rtol=1e-6)


@pytest.mark.parametrize("keys, amp_level, expected", [
    (dict(loss_scale=1024.0), "O2", (1024.0, False)),
    (dict(loss_scale=1024.0, loss_scale_type="dynamic", drop_overflow_update=True), "O0", (1024.0, True)),
    (dict(loss_scale=1024.0, loss_scale_type="auto"), "O0", (1.0, False)),
    (dict(loss_scale=1024.0, loss_scale_type="auto"), "O3", (1.0, False)),
])
def test_loss_scaling_follows_mindcvs_create_trainer(keys, amp_level, expected):
    assert optim.loss_scaling(_recipe(**keys), amp_level) == expected


def test_auto_loss_scale_is_what_mindspore_model_picks_for_each_amp_level():
    """MindCV hands mindspore.Model no loss-scale manager for `auto`; Model's build_train_network then takes the amp
    level's own: a DynamicLossScaleManager() for O2, none for the others."""
    from mindspore.train import amp

    auto = _recipe(loss_scale=1024.0, loss_scale_type="auto")
    for level in ("O0", "O1", "O2", "O3"):
        manager = amp._config_level[level]["loss_scale_manager"]
        expected = (manager.get_loss_scale(), True) if manager is not None else (1.0, False)
        assert optim.loss_scaling(auto, level) == expected
    assert optim.loss_scaling(auto, "O2") == (2.0 ** 24, True)
