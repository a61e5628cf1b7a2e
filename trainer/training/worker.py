"""One training worker process: `python -m incv4.trainer.training.worker -c RECIPE [--data-dir D] [--set k=v]...
[--ckpt-path P] [--no-resume] [--scale-lr]`.

Alone it trains on one process; started by the launcher (RANK_SIZE > 1 and MindSpore's dynamic-cluster env) it is
one data-parallel rank. Under the launcher the launcher serves /metrics for every rank, so the worker has no
metrics port."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

import click

from incv4.trainer import contract, options
from incv4.trainer.recipe import RecipeError, load

PROG = "python -m incv4.trainer.training.worker"


@click.command("worker", context_settings={"help_option_names": ["-h", "--help"]})
@options.config
@options.data_dir
@options.overrides
@options.ckpt_path
@options.no_resume
@options.scale_lr
def worker_command(config, data_dir, overrides, ckpt_path, no_resume, scale_lr) -> int:
    """Train (or resume) a recipe as one worker: alone, or one rank under `incv4 launch`."""
    try:
        recipe = load(config, overrides, data_dir=data_dir, ckpt_path=ckpt_path)
    except RecipeError as err:
        click.echo(f"error: {err}", err=True)
        return contract.USAGE
    from incv4.trainer.data.pipeline import decode_errors_are_permanent
    from incv4.trainer.training.loop import train

    return decode_errors_are_permanent(lambda: train(recipe, resume=not no_resume, scale_lr=scale_lr),
                                       lambda line: click.echo(line, err=True))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The worker's exit code for `argv` (default: this process's arguments); a bad flag is a usage line and 2."""
    try:
        return worker_command.main(args=list(argv) if argv is not None else None, prog_name=PROG,
                                   standalone_mode=False)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.Abort:
        return contract.FAILURE


if __name__ == "__main__":
    sys.exit(main())
