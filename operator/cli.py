"""The `incv4` command line (click). Operator commands live here; the trainer's commands (train, launch, validate,
demo-data, demo) are defined in `incv4.trainer.cli` and registered below. Nothing heavy is imported at start-up:
`incv4 render` must stay fast and never import MindSpore."""
import sys

import click

from incv4.trainer.recipe import RecipeError

# Exit codes, as kubectl and click use them: 0 success, 1 failure, 2 usage (bad flags, bad recipe, bad spec).
EXIT_FAILURE = 1
EXIT_USAGE = 2


class Incv4Group(click.Group):
    """Turns user errors into one line on stderr and the right exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecipeError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_USAGE)


@click.group(cls=Incv4Group, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train InceptionV4 on Kubernetes with Volcano and Ascend NPUs, and watch it."""


def _register_trainer_commands():
    from incv4.trainer import cli as trainer_cli

    trainer_cli.register(main)


_register_trainer_commands()
