"""One side of the train-step case, as a long-lived process: `python -m bench.train_worker --side S --size N
--batch B`. It builds the network, loss, optimizer and train step the way that side's users do, then answers
commands on stdin: `compile` (first step, timed), `steps K` (K timed steps), `quit` (peak RSS). Inputs are one
fixed random batch so only the train step is timed.

Sides (same recipe semantics everywhere: momentum 0.9, CE with label smoothing 0.1, weight decay 4e-5 not applied
to BatchNorm parameters and biases, warmup-cosine lr per step, drop_rate 0.2, fp32):
  incv4   incv4.trainer.model.inception_v4/optim, graph mode, the train step incv4's trainer builds (uint8 input normalised in
          the step, as the trainer gets it from its pipeline; the other sides get float input), and the trainer's
          CPU convolution op with oneDNN uncapped when it builds (trainer/cpu_conv.py), as the trainer runs
  mindcv  mindcv.create_model/create_loss/create_optimizer/create_scheduler + create_trainer (mindspore.Model's
          train network: what MindCV's train.py runs), graph mode
  timm    timm.create_model('inception_v4') in PyTorch eager, SGD with timm's no-decay grouping
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from bench.common import emit, peak_rss_mb

STEPS_PER_EPOCH = 10  # only shapes the lr schedule; the same list length on every side
RECIPE = dict(lr=0.045, min_lr=0.0, warmup_epochs=5, decay_epochs=195, epoch_size=200, momentum=0.9,
              weight_decay=0.00004, label_smoothing=0.1, drop_rate=0.2, num_classes=1000)


def apply_onednn_isa(choice: str, environ=os.environ) -> None:
    """"capped": the cap incv4's trainer sets (bench/common.py MINDSPORE_CPU_ENV); "default": none, oneDNN's own
    choice for this CPU (lever isa_default; also what timm's side gets)."""
    from bench.common import MINDSPORE_CPU_ENV

    for name, value in MINDSPORE_CPU_ENV.items():
        if choice == "default":
            environ.pop(name, None)
        else:
            environ[name] = value


def _mindspore_context(args):
    apply_onednn_isa(args.onednn_isa)  # before MindSpore's first kernel: oneDNN reads it then
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    if args.jit_level:
        ms.set_context(jit_config={"jit_level": args.jit_level})
    if args.threads:  # CPU kernel threads (MindSpore's default: 25)
        from mindspore.device_context.cpu import op_tuning

        op_tuning.threads_num(args.threads)
    if args.compile_cache:  # MindSpore's compile cache: a later process with the same graph skips compiling
        ms.set_context(enable_compile_cache=True, compile_cache_path=args.compile_cache)
    if args.dispatch_threads:  # runtime (dispatch) threads (default: 5)
        ms.runtime.dispatch_threads_num(args.dispatch_threads)
    if args.graph_kernel:  # MindSpore's graph kernel fusion (AKG): fuses elementwise chains such as BN + ReLU
        ms.set_context(enable_graph_kernel=True)
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


def _incv4_train_step(net, loss, opt, recipe):
    """The train step incv4's trainer compiles and the way it calls it each step (incv4.trainer.training.train)."""
    import mindspore as ms
    import numpy as np
    from incv4.trainer.model import optim as incv4_optim
    from incv4.trainer.training import train as incv4_train

    step = incv4_train.build_train_step(net, loss, opt, recipe.loss_scale, 1,
                                        incv4_optim.optimizer_loss_scale(recipe),
                                        check_gradients=False)  # as train.py builds it for amp O0 (the CPU)
    one, do_update = ms.Tensor(np.float32(1.0)), ms.Tensor(True)

    def call(x, y):
        return step(x, y, one, do_update, ms.Tensor(np.float32(0.0)))  # as train.py: a fresh stop flag per step

    return call


def build_mindcv(args):
    _mindspore_context(args)
    import mindspore as ms
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
    return step


def build_timm(args):
    apply_onednn_isa("default")  # PyTorch's own oneDNN reads it too: timm runs as its users run it, uncapped
    import numpy as np
    import timm
    import torch
    from timm.optim import param_groups_weight_decay

    if args.threads:
        torch.set_num_threads(args.threads)
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


def build(args):
    """Returns (one_step() -> loss, info)."""
    if args.side == "timm":
        return build_timm(args)
    if args.side == "incv4":
        args.conv_library = None
        if args.cpu_conv == "auto":  # as the trainer decides (trainer/cpu_backend.py): the op, then no cap
            from incv4.trainer import cpu_conv

            args.conv_library = (args.conv_library_file or
                                 cpu_conv.choose(lambda line: print(line, file=sys.stderr)))
            if args.conv_library and args.onednn_isa == "capped":
                args.onednn_isa = "default"
        _mindspore_context(args)
        step, x, y = _build_incv4_parts(args)
    else:
        step = build_mindcv(args)
        x, y = _batch_ms(args)

    def one_step():
        out = step(x, y)
        loss = out[0] if isinstance(out, (tuple, list)) else out
        return float(loss.asnumpy())  # forces the step to finish

    return one_step, {}


def _build_incv4_parts(args):
    from incv4.trainer.launcher import launch as incv4_launch
    from incv4.trainer.model import inception_v4 as incv4_model
    from incv4.trainer.model import optim as incv4_optim
    from incv4.trainer import recipe as incv4_recipe

    # The thread settings an incv4 worker applies (from the env its launcher sets; none in a lone process).
    getattr(incv4_launch, "apply_worker_settings", lambda: None)()
    recipe = incv4_recipe.load(incv4_recipe.shipped_path("inception_v4_ascend.yaml"),
                               overrides=[f"batch_size={args.batch}", f"image_resize={args.size}",
                                          "amp_level=O0", "loss_scale=1.0", "device_target=CPU",
                                          "distribute=False"])
    factory = incv4_model.inception_v4
    if args.model == "fused_1x1":  # lever: sibling 1x1 convs as one conv (bench/experiments/inceptionv4_fused_1x1.py)
        from bench.experiments import inceptionv4_fused_1x1

        factory = inceptionv4_fused_1x1.inception_v4
    elif args.model == "lean_blocks":  # lever: BasicConv2d calls its primitives itself (bench/experiments)
        from bench.experiments import lean_blocks

        factory = lean_blocks.inception_v4
    net = factory(num_classes=recipe.num_classes, drop_rate=recipe.drop_rate, bn_momentum=recipe.bn_momentum)
    decayed_in_gradient = []
    if args.conv_library:  # as train.py: the CPU convolution op (adding the weight decay to its weight gradients)
        from incv4.trainer import cpu_conv

        own_optimizer = args.optimizer == "incv4"  # the optimizer levers decay every weight themselves
        swapped = cpu_conv.swap(net, args.conv_library,
                                incv4_optim.gradient_weight_decay(recipe) if own_optimizer else 0.0)
        decayed_in_gradient = swapped if own_optimizer else []
    loss = incv4_optim.create_loss(recipe)
    schedule = incv4_optim.create_lr_schedule(recipe, STEPS_PER_EPOCH)
    opt = incv4_optim.create_optimizer(net, recipe, schedule, decayed_in_gradient)
    if args.optimizer == "decay_in_kernel":  # lever: weight decay inside ops.SGD (bench/experiments)
        from bench.experiments import fused_sgd_optimizer

        opt = fused_sgd_optimizer.create_optimizer(net, recipe, schedule)
    elif args.optimizer == "unrolled":  # lever: nn.Momentum's update as one unrolled loop (bench/experiments)
        from bench.experiments import unrolled_momentum

        opt = unrolled_momentum.create_optimizer(net, recipe, schedule)
    if args.step == "plain":
        import mindspore.nn as nn

        step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
        step.set_train()
    elif args.step == "split":  # lever: fwd+bwd and the optimizer as two graphs (bench/experiments)
        from bench.experiments import split_graphs

        step = split_graphs.SplitStep(net, loss, opt).set_train()
    elif args.step.startswith("v:"):
        import mindspore as ms
        import numpy as np
        from bench import step_variants

        cell = step_variants.build(net, loss, opt, args.step[2:])
        one, do_update, stop = ms.Tensor(np.float32(1.0)), ms.Tensor(True), ms.Tensor(np.float32(0.0))
        step = lambda x, y: cell(x, y, one, do_update, stop)  # noqa: E731
    else:  # as train.py: uint8 batches, normalised inside the compiled step (its cost is in the timing)
        from incv4.trainer.data import pipeline as incv4_data

        step = _incv4_train_step(incv4_data.with_normalizer(recipe, net), loss, opt, recipe)
        return (step,) + _batch_ms(args, uint8=True)
    x, y = _batch_ms(args)
    return step, x, y


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("incv4", "mindcv", "timm"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jit-level", default="", help="MindSpore jit_level (O0/O1/O2); default: MindSpore's")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = the framework default")
    parser.add_argument("--compile-cache", default="", help="a directory: enable MindSpore's compile cache there")
    parser.add_argument("--dispatch-threads", type=int, default=0, help="MindSpore runtime threads; 0 = default")
    parser.add_argument("--graph-kernel", action="store_true",
                        help="enable MindSpore's graph kernel fusion (its AKG compiler imports `decorator`: "
                             "pip install decorator first; it writes akg_kernel_meta/ in the working directory)")
    parser.add_argument("--step", choices=("trainer", "plain", "split", "v:trainer", "v:loss_check",
                                           "v:no_branch", "v:no_check"), default="trainer",
                        help="incv4 side: the train step incv4's trainer builds, or MindSpore's plain "
                             "TrainOneStepCell(WithLossCell), or split (bench/experiments/split_graphs.py), or "
                             "v:X a variant from bench/step_variants.py (lever experiments)")
    parser.add_argument("--optimizer", choices=("incv4", "decay_in_kernel", "unrolled"), default="incv4",
                        help="incv4's optimizer, or a lever from bench/experiments "
                             "(fused_sgd_optimizer.py, unrolled_momentum.py)")
    parser.add_argument("--onednn-isa", choices=("capped", "default"), default="capped",
                        help="MindSpore sides: oneDNN capped at AVX2 as incv4's trainer does (bench/common.py "
                             "MINDSPORE_CPU_ENV), or oneDNN's own ISA choice for this CPU")
    parser.add_argument("--cpu-conv", choices=("auto", "mindspore"), default="auto",
                        help="incv4 side: its CPU convolution op when it builds, oneDNN uncapped, as the trainer "
                             "runs (trainer/cpu_conv.py, cpu_backend.py); or MindSpore's Conv2D, capped at AVX2")
    parser.add_argument("--conv-library-file", metavar="SO",
                        help="incv4 side, --cpu-conv auto: this prebuilt cpu_conv library instead of the one built "
                             "from trainer/cpu_conv.cc (a lever: an earlier or edited version of the kernels)")
    parser.add_argument("--model", choices=("incv4", "fused_1x1", "lean_blocks"), default="incv4",
                        help="incv4 side: trainer/model.py, or a model lever from bench/experiments")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    try:
        t0 = time.perf_counter()
        one_step, info = build(args)
        emit(event="ready", build_s=time.perf_counter() - t0, **info)
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
                return 0
    except Exception as err:
        traceback.print_exc()
        emit(error=f"{type(err).__name__}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
