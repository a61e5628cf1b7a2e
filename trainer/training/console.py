"""Where a worker's lines go: progress to stdout, warnings and errors to stderr, each flushed at once so the
launcher (which tags and forwards every line) and `kubectl logs` show them as they happen."""
from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, flush=True)


def log_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(_message: str) -> None:
    """The progress sink of every rank but 0: one rank reports the run's progress."""
