"""A checkpoint the user names (`--ckpt-path`, recipe key `ckpt_path`): checked to be an existing, readable
regular file before anything loads MindSpore, so a wrong path is one line and a usage error, never a traceback
or a retryable failure minutes later."""
from __future__ import annotations

import os
import stat

from incv4.trainer.recipe import RecipeError


def require_checkpoint_file(path: str) -> None:
    """Raise RecipeError (one line, exit 2) unless `path` is a regular file this process can read."""
    where = f"recipe key 'ckpt_path': checkpoint '{path}'"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RecipeError(f"{where} does not exist") from None
    except OSError as err:
        raise RecipeError(f"{where} cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise RecipeError(f"{where} is a directory; give the .ckpt file inside it")
    if not stat.S_ISREG(mode):
        raise RecipeError(f"{where} is not a regular file")
    try:
        with open(path, "rb") as fh:  # a regular file: opening never blocks
            fh.read(1)
    except OSError as err:
        raise RecipeError(f"{where} cannot be read ({err.strerror or err})") from None
