"""The `incv4` command line (click): one group whose commands are listed by who runs them. The cluster commands live
in incv4.operator.cli_cluster, the local and in-pod ones in incv4.trainer.cli. Nothing heavy is imported at
start-up: `incv4 render` must stay fast and never import MindSpore or the launcher.

Results go to stdout, diagnostics to stderr; exit 0 (ok), 1 (failure), 2 (usage: bad flags, recipe, spec, or a
request the server rejected as invalid). No traceback for user errors.
"""
from __future__ import annotations

import importlib
import sys

import click

from incv4.operator.cluster import ClusterError  # cheap: the kubernetes client loads on first use
from incv4.operator.spec import SpecError
from incv4.trainer import contract
from incv4.trainer.recipe import RecipeError

# `incv4 --help` groups the commands by who runs them, in this order.
COMMAND_SECTIONS = (
    ("Cluster commands", ("render", "doctor", "submit", "list", "status", "logs", "watch", "delete", "suspend",
                          "resume")),
    ("Local commands", ("train", "validate", "demo", "demo-data", "report")),
    ("In-pod commands", ("launch",)),
)


class Incv4Group(click.Group):
    """Turns user errors into one line on stderr and the right exit code, never a traceback. Commands with heavy
    modules can be registered lazily: their module is imported only when that command runs (or help lists it),
    so `incv4 render` does not pay for the launcher's imports."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = {}  # name -> (module, attribute)

    def add_lazy_command(self, name: str, module: str, attribute: str) -> None:
        self.lazy_commands[name] = (module, attribute)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands and name not in self.commands:
            module, attribute = self.lazy_commands[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        """One help section per kind of user (COMMAND_SECTIONS); a command in none of them goes under Commands."""
        commands = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                commands[name] = command
        if not commands:
            return
        width = max(len(name) for name in commands)
        limit = formatter.width - 6 - width
        placed = set()
        for title, names in COMMAND_SECTIONS + (("Commands", tuple(commands)),):
            names = [name for name in names if name in commands and name not in placed]
            placed.update(names)
            # Padded to one width so the sections' help columns line up.
            rows = [(name.ljust(width), commands[name].get_short_help_str(limit)) for name in names]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (RecipeError, SpecError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(contract.USAGE)
        except ClusterError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=Incv4Group, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train InceptionV4 on Kubernetes with Volcano and Ascend NPUs, and watch it."""


def _register_commands():
    from incv4.operator import cli_cluster
    from incv4.trainer import cli as trainer_cli

    cli_cluster.register(main)
    trainer_cli.register(main)
    main.add_lazy_command("report", "incv4.operator.report.command", "report_command")  # matplotlib on use only


_register_commands()

if __name__ == "__main__":  # `python -m incv4.operator.cli`, as the console script
    main()
