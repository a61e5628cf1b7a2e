"""The trainer's commands: train, launch, validate, demo-data, demo. Heavy modules are imported inside each command,
so `incv4 --help` and `incv4 render` never load MindSpore."""
import click


def register(group: click.Group) -> None:
    """Add the trainer's commands to the top-level `incv4` group."""
