"""The local commands (train, validate, demo, demo-data) and the registration of the in-pod `launch`
(trainer/launcher/launch.py). Heavy modules are imported inside each command, so `incv4 --help` and `incv4 render`
never load MindSpore. Options come from trainer/options.py; flags accept MindCV's spellings too (-c, --data_dir,
--ckpt_path, --distribute False)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys

import click
from click.core import ParameterSource

from incv4.trainer import contract, options
from incv4.trainer.recipe import RecipeError

DEMO_RECIPE = "inception_v4_cpu_demo.yaml"
# Demo images are drawn a little larger than the recipe's 75px so the random-resized crop has room.
DEMO_IMAGE_SIZE = 80


def _mindcv_bool(value):
    """MindCV's `--distribute False` style booleans."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise click.BadParameter(f"expected True or False, got {value!r}")


def _load_recipe(config, overrides, **explicit):
    from incv4.trainer import recipe as recipes

    return recipes.load(config, overrides, **explicit)


def _check_checkpoint(recipe, required: bool) -> None:
    """A missing, unreadable or directory `ckpt_path` is a usage error found before MindSpore loads."""
    from incv4.trainer.checkpoint.given import require_checkpoint_file

    if not recipe.ckpt_path:
        if required:
            raise RecipeError("recipe key 'ckpt_path': validate needs a checkpoint (give --ckpt-path)")
        return
    require_checkpoint_file(recipe.ckpt_path)


def _worker_flags(ckpt_path, no_resume) -> list:
    """Worker flags the launcher passes through unchanged (it handles the recipe, data dir and --scale-lr)."""
    flags = ["--ckpt-path", ckpt_path] if ckpt_path else []
    return flags + (["--no-resume"] if no_resume else [])


# errnos of a kernel (or container) without IPv6: the check falls back to IPv4, as the exporter does
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def _check_metrics_port(port: int) -> None:
    """A /metrics port something else holds is a usage error found before any work starts: one line, exit 2.
    Binds as the dual-stack exporter does (every address, address reuse on), then lets go."""
    if not port:
        return
    try:
        if not _bind_dual_stack(port):
            _bind(socket.AF_INET, ("0.0.0.0", port))
    except OSError as err:
        click.echo(f"error: cannot serve metrics on port {port}: {err.strerror or err} "
                   f"(give --metrics-port 0 to turn metrics off)", err=True)
        sys.exit(contract.USAGE)


def _bind_dual_stack(port: int) -> bool:
    """Bind "::" with IPV6_V6ONLY off, which conflicts with a holder on any IPv4 or IPv6 address. False when the
    kernel has no IPv6; a port in use raises OSError."""
    if not socket.has_ipv6:
        return False
    try:
        _bind(socket.AF_INET6, ("::", port), dual_stack=True)
    except OSError as err:
        if err.errno in _NO_IPV6:
            return False
        raise
    return True


def _bind(family: int, address: tuple, dual_stack: bool = False) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:  # say so rather than rely on the net.ipv6.bindv6only sysctl
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)


def run_training(config, overrides, data_dir, workers, ckpt_path=None, no_resume=False, scale_lr=False,
                 metrics_port=contract.METRICS_PORT, compile_cache=True, max_restarts=0, bind_core=False) -> int:
    """Validate the recipe, the data and the metrics port, then train with 1 worker in this process or N workers
    via the launcher. Returns the exit code."""
    if max_restarts and workers == 1:  # one worker trains in this process: there is no launcher to restart it
        raise RecipeError(f"--max-restarts {max_restarts} restarts the launcher's workers; give --workers 2 or more")
    recipe = _load_recipe(config, overrides, data_dir=data_dir, ckpt_path=ckpt_path)
    _check_checkpoint(recipe, required=False)
    from incv4.trainer.data.check import check_run_data

    check_run_data(recipe)  # one line before any MindSpore work
    _check_metrics_port(metrics_port)
    if workers == 1:
        from incv4.trainer.launcher.supervisor import run_guarded

        if bind_core:
            _say_single_worker_binding()

        # In a watched child: a decoder that dies on an image is named in one line, exit 2 (supervisor.py).
        return run_guarded(lambda: _train_here(recipe, no_resume, scale_lr, metrics_port), "the training process")
    from incv4.trainer.launcher import plan

    return plan.run_local(config, overrides, data_dir, workers, metrics_port, scale_lr,
                          *_worker_flags(ckpt_path, no_resume), compile_cache=compile_cache,
                          max_restarts=max_restarts, bind_core=bind_core)


def _say_single_worker_binding() -> None:
    """--bind-core with one worker: its share is every CPU this process may use, which it already runs on."""
    from incv4.trainer.launcher import cpu_binding

    cpus = cpu_binding.pod_cpus()
    _say(cpu_binding.describe_plan(cpus, cpu_binding.split(cpus, 1)) + "; one worker: nothing to split")


def _train_here(recipe, no_resume, scale_lr, metrics_port) -> int:
    from incv4.trainer.data.pipeline import decode_errors_are_permanent
    from incv4.trainer.training.loop import train  # MindSpore loads here, in the guarded child

    return decode_errors_are_permanent(
        lambda: train(recipe, resume=not no_resume, scale_lr=scale_lr, metrics_port=metrics_port), _say)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _validate_here(recipe, output) -> int:
    from incv4.trainer.data.pipeline import decode_errors_are_permanent

    return decode_errors_are_permanent(lambda: _validate_and_print(recipe, output), _say)


def _validate_and_print(recipe, output) -> int:
    from incv4.trainer.training import evaluate

    try:
        accuracy = evaluate.run_validate(recipe, recipe.ckpt_path, log=_say)
    except evaluate.ValidateError as err:
        click.echo(f"error: {err}", err=True)
        return contract.FAILURE
    except RecipeError as err:  # in the guarded child, the group's handler is not there to say it
        click.echo(f"error: {err}", err=True)
        return contract.USAGE
    if output == "json":
        click.echo(json.dumps({**accuracy.as_dict(), "checkpoint": recipe.ckpt_path}))
    else:
        click.echo(evaluate.format_table(accuracy, recipe.ckpt_path))
    return contract.OK


def register(group: click.Group) -> None:
    """Add the local commands and the in-pod `launch` to the top-level `incv4` group (operator/cli.py)."""
    group.add_command(train_command)
    group.add_command(validate_command)
    group.add_command(demo_command)
    group.add_command(demo_data_command)
    group.add_lazy_command("launch", "incv4.trainer.launcher.launch", "launch_command")  # its imports only for `launch`


@click.command("train")
@options.config.variant(required=True)
@options.data_dir
@options.overrides
@options.workers
@click.option("--distribute", callback=lambda ctx, p, v: _mindcv_bool(v), default=None, metavar="True|False",
              help="MindCV's flag: False = one worker.")
@options.ckpt_path
@options.no_resume
@options.scale_lr
@options.metrics_port
@options.compile_cache
@options.max_restarts
@options.bind_core
@click.pass_context
def train_command(ctx, config, data_dir, overrides, workers, distribute, ckpt_path, no_resume, scale_lr,
                  metrics_port, compile_cache, max_restarts, bind_core):
    """Train (or resume) InceptionV4 with a recipe, as MindCV's train.py."""
    if distribute is False:
        if ctx.get_parameter_source("workers") is not ParameterSource.DEFAULT and workers != 1:
            raise RecipeError(f"--distribute False means one worker, but --workers {workers} was given")
        workers = 1
    if distribute is not None:  # MindCV's flag sets the recipe key, over the recipe file as in MindCV
        overrides = (*overrides, f"distribute={distribute}")
    sys.exit(run_training(config, overrides, data_dir, workers, ckpt_path, no_resume, scale_lr,
                          metrics_port, compile_cache, max_restarts, bind_core))


@click.command("validate")
@options.config.variant(required=True)
@options.data_dir
@options.overrides
@options.ckpt_path.variant(help="Checkpoint to evaluate.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def validate_command(config, data_dir, overrides, ckpt_path, output):
    """Top-1/top-5 of a checkpoint on the val split, as MindCV's validate.py."""
    recipe = _load_recipe(config, overrides, data_dir=data_dir, ckpt_path=ckpt_path)
    _check_checkpoint(recipe, required=True)
    from incv4.trainer.data.check import check_run_data

    check_run_data(recipe, [recipe.val_split])
    from incv4.trainer.launcher.supervisor import run_guarded

    code = run_guarded(lambda: _validate_here(recipe, output), "incv4 validate")
    if code:
        sys.exit(code)


@click.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--num-classes", type=click.IntRange(min=2), default=10)
@click.option("--train-per-class", type=click.IntRange(min=1), default=64)
@click.option("--val-per-class", type=click.IntRange(min=1), default=16)
@click.option("--image-size", type=click.IntRange(min=75), default=96)
@click.option("--seed", type=click.IntRange(min=0), default=0)
def demo_data_command(out_dir, num_classes, train_per_class, val_per_class, image_size, seed):
    """Write a small learnable synthetic ImageFolder (train/ and val/, JPEG) to OUT_DIR."""
    summary = _write_demo_data(out_dir, num_classes, train_per_class, val_per_class, image_size, seed)
    click.echo(f"{'kept' if summary.get('reused') else 'wrote'} {summary['train_images']} train and "
               f"{summary['val_images']} val images of {summary['num_classes']} classes in {summary['out_dir']}")


class _Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is, so `finally` and cleanup code run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """Inside the block SIGINT/SIGTERM raise _Interrupted (SIGTERM's default would end the process at once,
    skipping the cleanup of the temporary folder). Outside the main thread signals cannot be handled: no-op."""
    def handler(signum, _frame):
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        raise _Interrupted(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        previous = {}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _write_demo_data(out_dir, num_classes, train_per_class, val_per_class, image_size, seed) -> dict:
    """Write the demo dataset; an interruption removes its temporary folder and exits 128 + the signal number."""
    from incv4.trainer.data import demo as demo_data
    from incv4.trainer.data.pipeline import DataError

    try:
        with _signals_raise():
            return demo_data.write_demo_dataset(out_dir, num_classes=num_classes, train_per_class=train_per_class,
                                                val_per_class=val_per_class, image_size=image_size, seed=seed)
    except DataError as err:
        raise RecipeError(str(err)) from None
    except _Interrupted as stop:
        click.echo(f"error: demo-data was interrupted by {signal.Signals(stop.signum).name}; "
                   f"its temporary folder was removed", err=True)
        sys.exit(128 + stop.signum)


@click.command("demo")
@click.option("--work-dir", default="./incv4-demo", type=click.Path(file_okay=False), show_default=True,
              help="where the demo data and checkpoints go")
@options.workers
@click.option("--train-per-class", type=click.IntRange(min=1), default=32, show_default=True,
              help="demo training images per class")
@click.option("--val-per-class", type=click.IntRange(min=1), default=8, show_default=True)
@options.overrides
@options.metrics_port
def demo_command(work_dir, workers, train_per_class, val_per_class, overrides, metrics_port):
    """The whole local pipeline: demo data, data-parallel training on the CPU, top-1 vs chance, the report."""
    from incv4.trainer.checkpoint import demo_folder, store as checkpoint
    from incv4.trainer.recipe import shipped_path

    config = shipped_path(DEMO_RECIPE)
    data_dir = os.path.join(work_dir, "data")
    overrides = (f"ckpt_save_dir={os.path.join(work_dir, 'ckpt')}",) + tuple(overrides)
    recipe = _load_recipe(config, overrides, data_dir=data_dir)
    ckpt_dir = recipe.ckpt_save_dir  # a user's --set ckpt_save_dir is guarded the same way
    demo_folder.claim(ckpt_dir)  # refuses a folder the demo did not make, before any work; each demo starts empty
    summary = _write_demo_data(data_dir, recipe.num_classes, train_per_class, val_per_class, DEMO_IMAGE_SIZE, 0)
    click.echo(f"demo data: {summary['train_images']} train / {summary['val_images']} val images, "
               f"{summary['num_classes']} classes in {summary['out_dir']}")
    click.echo(f"training {workers} worker(s) x batch {recipe.batch_size} at {recipe.image_resize}px for "
               f"{recipe.epoch_size} epochs (checkpoints in {ckpt_dir})")
    code = run_training(config, overrides, data_dir, workers, no_resume=True, metrics_port=metrics_port)
    if code != 0:
        click.echo(f"error: the demo training exited with code {code}", err=True)
        sys.exit(code)
    entries = checkpoint.read_manifest(ckpt_dir)
    if not entries:  # the training goes on when a checkpoint write fails; its error line above says why
        click.echo(f"error: the demo finished but wrote no checkpoint in {ckpt_dir}, so no evaluation was "
                   f"recorded (see the checkpoint error above)", err=True)
        sys.exit(contract.FAILURE)
    top1 = entries[-1].extra.get("top1")
    chance = 1.0 / recipe.num_classes
    if top1 is None:
        click.echo("error: the demo finished but recorded no evaluation", err=True)
        sys.exit(contract.FAILURE)
    _demo_report(ckpt_dir, os.path.join(work_dir, "report.html"))  # before the result, which stays the last line
    verdict = "above" if top1 > chance else "NOT above"
    click.echo(f"demo result: top-1 {top1 * 100:.1f}% vs chance {chance * 100:.1f}% (1/{recipe.num_classes}): "
               f"{verdict} chance")


def _demo_report(ckpt_dir: str, path: str) -> None:
    """The run's report (curves, recipe, summary) beside the demo's data, from the history rank 0 wrote."""
    from incv4.operator.report.command import write_report
    from incv4.operator.report.data import ReportError

    try:
        click.echo(f"report: {write_report(ckpt_dir, path)}")
    except ReportError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
