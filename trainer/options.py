"""Click options shared by the trainer's entry points (`incv4 train`, `validate`, `demo`, `launch`, the worker
process), each declared once here so its name, spellings, default and help agree everywhere. MindCV's spellings
(-c, --data_dir, --ckpt_path) are accepted beside incv4's.

Use an option as a decorator (`@options.config`); a command that needs it differently in one respect says so with
`variant`, e.g. `@options.config.variant(required=True)`.
"""
from __future__ import annotations

import click

from incv4.trainer import contract
from incv4.trainer.contract import DEFAULT_LOCAL_WORKERS

# Seconds for every peer to join the cluster before the launcher gives up (msrun's --cluster_time_out default).
CLUSTER_TIMEOUT = 600


class SharedOption:
    """A click option declared once; applied as a decorator, or changed for one command with `variant`."""

    def __init__(self, *decls: str, **attrs):
        self.decls = decls
        self.attrs = attrs

    def __call__(self, fn):
        return click.option(*self.decls, **self.attrs)(fn)

    def variant(self, **changes):
        return click.option(*self.decls, **{**self.attrs, **changes})


config = SharedOption("--config", "-c", "config", type=click.Path(dir_okay=False),
                      help="Recipe YAML (MindCV's keys).")
data_dir = SharedOption("--data-dir", "--data_dir", "data_dir", default=None,
                        help="ImageFolder root with train/ and val/ (overrides the recipe's data_dir).")
overrides = SharedOption("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="Override a recipe key (repeatable; the value is read as YAML).")
ckpt_path = SharedOption("--ckpt-path", "--ckpt_path", "ckpt_path", default=None,
                         help="Weights to fine-tune from (MindCV's ckpt_path).")
no_resume = SharedOption("--no-resume", is_flag=True,
                         help="Start fresh instead of resuming from ckpt_save_dir.")
scale_lr = SharedOption("--scale-lr", is_flag=True,
                        help="Scale lr linearly when the global batch differs from the recipe's reference.")
metrics_port = SharedOption("--metrics-port", type=click.IntRange(0, 65535), default=contract.METRICS_PORT,
                            show_default=True, help="Serve /metrics on this port (0 = off).")
workers = SharedOption("--workers", type=click.IntRange(min=1), default=DEFAULT_LOCAL_WORKERS, show_default=True,
                       help="Data-parallel worker processes on this machine (1 = in this process).")
compile_cache = SharedOption("--compile-cache/--no-compile-cache", default=True, show_default=True,
                             help="With several workers: keep MindSpore's compiled graphs under "
                                  "<ckpt_save_dir>/compile_cache; each graph is compiled by the node's first worker "
                                  "and loaded by the others, and restarts skip compiling.")
cluster_timeout = SharedOption("--cluster-timeout", type=click.IntRange(min=1), default=CLUSTER_TIMEOUT,
                               show_default=True, help="Seconds for every peer to join before failing with exit 3.")
max_restarts = SharedOption("--max-restarts", type=click.IntRange(min=0), default=0, show_default=True,
                            help="One node only: restart the node's workers (all of them, from the newest "
                                 "checkpoint) up to N times after a retryable failure, as torchrun's "
                                 "--max-restarts (exit 1, a kill, exit 3; never exit 2, 4 or a stop request).")
bind_core = SharedOption("--bind-core/--no-bind-core", default=False, show_default=True,
                         help="As msrun --bind_core=True: each local worker runs on its own contiguous share of the "
                              "CPUs this process may use (round-robin, one CPU each, when there are fewer CPUs "
                              "than workers), handed to MindSpore's set_cpu_affinity where it can bind.")
grace_period = SharedOption("--grace-period", type=click.FloatRange(min=0), default=contract.LAUNCH_GRACE_PERIOD,
                            show_default=True, help="Seconds between SIGTERM and SIGKILL when stopping workers.")
