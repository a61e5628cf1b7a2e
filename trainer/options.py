"""Click options shared by the trainer's entry points (`incv4 train`, `incv4 launch`, `incv4 demo`, the worker
process), each declared once here so its name, spellings, default and help agree everywhere. MindCV's spellings
(-c, --data_dir, --ckpt_path) are accepted beside incv4's."""
from __future__ import annotations

import click

from incv4.trainer import contract

config = click.option("--config", "-c", "config", type=click.Path(dir_okay=False),
                      help="Recipe YAML (MindCV's keys).")
data_dir = click.option("--data-dir", "--data_dir", "data_dir", default=None,
                        help="ImageFolder root with train/ and val/ (overrides the recipe's data_dir).")
overrides = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help="Override a recipe key (repeatable; the value is read as YAML).")
ckpt_path = click.option("--ckpt-path", "--ckpt_path", "ckpt_path", default=None,
                         help="Weights to fine-tune from (MindCV's ckpt_path).")
no_resume = click.option("--no-resume", is_flag=True,
                         help="Start fresh instead of resuming from ckpt_save_dir.")
scale_lr = click.option("--scale-lr", is_flag=True,
                        help="Scale lr linearly when the global batch differs from the recipe's reference.")
metrics_port = click.option("--metrics-port", type=click.IntRange(0, 65535), default=contract.METRICS_PORT,
                            show_default=True, help="Serve /metrics on this port (0 = off).")
