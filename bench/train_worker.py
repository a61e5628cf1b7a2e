"""One side of the train-step case, as a long-lived process: `python -m bench.train_worker --side S --size N
--batch B`. It builds the network, loss, optimizer and train step the way that side's users do, then answers
commands on stdin: `compile` (first step, timed), `steps K` (K timed steps), `quit` (peak RSS). Inputs are one
fixed random batch so only the train step is timed.

Sides (same recipe semantics everywhere: momentum 0.9, CE with label smoothing 0.1, weight decay 4e-5 not applied
to BatchNorm parameters and biases, warmup-cosine lr per step, drop_rate 0.2, fp32):
  incv4   incv4.trainer.model (inception_v4, optim) and the train step incv4's trainer builds
          (incv4.trainer.training.step), graph mode, MindSpore's Conv2D with oneDNN capped at AVX2 as the trainer
          sets it (incv4.trainer.cpu_backend), MindSpore's default CPU threads (a lone trainer process sets none);
          uint8 input normalised in the step, as the trainer gets it from its pipeline (the other sides get float)
  mindcv  mindcv.create_model/create_loss/create_optimizer/create_scheduler + create_trainer (mindspore.Model's
          train network: what MindCV's train.py runs), graph mode, oneDNN capped at AVX2
  timm    timm.create_model('inception_v4') in PyTorch eager, SGD with timm's no-decay grouping, oneDNN uncapped
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from bench.common import MINDSPORE_CPU_ENV, emit, peak_rss_mb, worker_main

STEPS_PER_EPOCH = 10  # only shapes the lr schedule; the same list length on every side
RECIPE = dict(lr=0.045, min_lr=0.0, warmup_epochs=5, decay_epochs=195, epoch_size=200, momentum=0.9,
              weight_decay=0.00004, label_smoothing=0.1, drop_rate=0.2, num_classes=1000)


def _say(line: str) -> None:
    print(line, file=sys.stderr)  # stdout carries the JSON answers


def _mindspore_context():
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)


def _batch_ms(args, uint8: bool = False):
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.batch, 3, args.size, args.size)
    if uint8:  # what incv4's pipeline hands the trainer (normalised in the graph)
        x = ms.Tensor(rng.integers(0, 256, shape).astype(np.uint8))
    else:
        x = ms.Tensor(rng.standard_normal(shape, dtype=np.float32))
    y = ms.Tensor(rng.integers(0, RECIPE["num_classes"], args.batch).astype(np.int32))
    return x, y


def build_incv4(args):
    """As incv4's trainer builds and calls its step (incv4.trainer.training.train) for amp O0, the CPU."""
    from incv4.trainer import cpu_backend

    cpu_backend.prepare("CPU", _say)  # before MindSpore's first kernel: oneDNN reads the cap then
    _mindspore_context()
    import mindspore as ms
    import numpy as np

    from incv4.trainer import recipe as incv4_recipe
    from incv4.trainer.data import transforms
    from incv4.trainer.model import inception_v4, optim
    from incv4.trainer.training.step import build_train_step

    recipe = incv4_recipe.load(incv4_recipe.shipped_path("inception_v4_ascend.yaml"),
                               overrides=[f"batch_size={args.batch}", f"image_resize={args.size}",
                                          "amp_level=O0", "loss_scale=1.0", "device_target=CPU",
                                          "distribute=False"])
    net = inception_v4.inception_v4(num_classes=recipe.num_classes, drop_rate=recipe.drop_rate,
                                    bn_momentum=recipe.bn_momentum, bn_beta_init=recipe.bn_beta_init)
    net = transforms.with_normalizer(recipe, net)  # uint8 batches, normalised inside the compiled step
    loss = optim.create_loss(recipe)
    opt = optim.create_optimizer(net, recipe, optim.create_lr_schedule(recipe, STEPS_PER_EPOCH))
    step = build_train_step(net, loss, opt, recipe.loss_scale, 1, optim.optimizer_loss_scale(recipe),
                            check_gradients=False)
    update = ms.Tensor(True)
    x, y = _batch_ms(args, uint8=True)

    def one_step():
        loss_value, _finite, _stop = step(x, y, update, ms.Tensor(np.float32(0.0)))  # a fresh stop flag per step
        return float(loss_value.asnumpy())  # the trainer reads the loss every step

    return one_step, {}


def build_mindcv(args):
    os.environ.update(MINDSPORE_CPU_ENV)  # before MindSpore's first kernel: oneDNN reads the cap then
    _mindspore_context()
    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.optim import create_optimizer
    from mindcv.scheduler import create_scheduler
    from mindcv.utils import create_trainer, get_metrics

    net = create_model("inception_v4", num_classes=RECIPE["num_classes"], drop_rate=RECIPE["drop_rate"])
    loss = create_loss(name="CE", label_smoothing=RECIPE["label_smoothing"])
    lr = create_scheduler(STEPS_PER_EPOCH, scheduler="warmup_cosine_decay", lr=RECIPE["lr"],
                          min_lr=RECIPE["min_lr"], warmup_epochs=RECIPE["warmup_epochs"],
                          decay_epochs=RECIPE["decay_epochs"], num_epochs=RECIPE["epoch_size"])
    opt = create_optimizer(net.trainable_params(), opt="momentum", lr=lr, weight_decay=RECIPE["weight_decay"],
                           momentum=RECIPE["momentum"], nesterov=False, weight_decay_filter="norm_and_bias",
                           loss_scale=1.0)
    model = create_trainer(net, loss, opt, get_metrics(RECIPE["num_classes"]), amp_level="O0", amp_cast_list=None,
                           loss_scale_type="fixed", loss_scale=1.0, drop_overflow_update=False)
    step = model._train_network  # what Model.train runs each step (dataset_sink_mode False)
    step.set_train()
    x, y = _batch_ms(args)

    def one_step():
        out = step(x, y)
        return float((out[0] if isinstance(out, (tuple, list)) else out).asnumpy())  # forces the step to finish

    return one_step, {}


def build_timm(args):
    for name in MINDSPORE_CPU_ENV:  # PyTorch's own oneDNN reads it too: timm runs as its users run it, uncapped
        os.environ.pop(name, None)
    import numpy as np
    import timm
    import torch
    from timm.optim import param_groups_weight_decay

    torch.manual_seed(0)
    net = timm.create_model("inception_v4", num_classes=RECIPE["num_classes"], drop_rate=RECIPE["drop_rate"])
    net.train()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=RECIPE["label_smoothing"])
    groups = param_groups_weight_decay(net, weight_decay=RECIPE["weight_decay"])  # no decay on BN and biases
    opt = torch.optim.SGD(groups, lr=RECIPE["lr"], momentum=RECIPE["momentum"])
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.batch, 3, args.size, args.size), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, RECIPE["num_classes"], args.batch).astype(np.int64))

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())

    return one_step, {"torch_threads": torch.get_num_threads()}


BUILDERS = {"incv4": build_incv4, "mindcv": build_mindcv, "timm": build_timm}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=tuple(BUILDERS), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, default=8)
    return parser


def serve(one_step) -> None:
    """Answer `compile`, `steps K` and `quit` from stdin until `quit` or end of input."""
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "compile":
            t = time.perf_counter()
            loss = one_step()
            emit(compile_s=time.perf_counter() - t, loss=loss)
        elif cmd[0] == "steps":
            times, loss = [], None
            for _ in range(int(cmd[1])):
                t = time.perf_counter()
                loss = one_step()
                times.append(time.perf_counter() - t)
            emit(step_s=times, loss=loss)
        elif cmd[0] == "quit":
            emit(peak_rss_mb=peak_rss_mb())
            return


@worker_main
def main(argv=None):
    args = argument_parser().parse_args(argv)
    t0 = time.perf_counter()
    one_step, info = BUILDERS[args.side](args)  # info: settings worth recording with the figures
    emit(event="ready", build_s=time.perf_counter() - t0, **info)
    serve(one_step)


if __name__ == "__main__":
    sys.exit(main())
