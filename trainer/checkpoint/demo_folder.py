"""The checkpoint folder of `incv4 demo`: each demo starts from an empty one, but only a folder the demo made
itself (it holds the marker file) and that holds nothing but what incv4 writes there is ever emptied. Anything
else is refused in one line, before any work starts, so a user's files are never deleted."""
from __future__ import annotations

import os
import shutil
import stat

from incv4.trainer.checkpoint import store
from incv4.trainer.recipe import RecipeError
from incv4.trainer.training.history import HISTORY_FILE

MARKER = ".incv4-demo"
# Folders incv4 writes under ckpt_save_dir: the launcher's per-rank logs, the graph compile cache, and the
# previous runs' checkpoints a fresh start sets aside (store.set_aside).
_OWN_FOLDERS = ("logs", "compile_cache")
_SET_ASIDE_PREFIX = "replaced-"


def _written_by_incv4(folder: str, name: str) -> bool:
    try:
        mode = os.lstat(os.path.join(folder, name)).st_mode  # lstat: a symlink is never incv4's
    except OSError:
        return False
    if stat.S_ISREG(mode):
        return (name in (MARKER, store.MANIFEST, HISTORY_FILE) or name.startswith(".tmp-")
                or store.is_own_checkpoint(folder, name))
    if stat.S_ISDIR(mode):
        return name in _OWN_FOLDERS or name.startswith(_SET_ASIDE_PREFIX)
    return False


def _refuse(folder: str) -> None:
    raise RecipeError(f"{folder} exists and was not made by incv4 demo; choose another --work-dir or remove it")


def claim(folder: str) -> None:
    """Leave `folder` empty but for the demo's marker. Raises RecipeError (exit 2) when it exists and is not the
    demo's own: not a directory, no marker, or holding anything incv4 does not write."""
    try:
        if os.path.lexists(folder):
            if not os.path.isdir(folder):
                _refuse(folder)
            names = os.listdir(folder)
            if names and (MARKER not in names or not all(_written_by_incv4(folder, n) for n in names)):
                _refuse(folder)
            for name in names:
                if name != MARKER:
                    _remove(os.path.join(folder, name))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as fh:
            fh.write("made by incv4 demo: the demo empties this folder on its next run\n")
    except OSError as err:
        raise RecipeError(f"cannot prepare the demo's checkpoint folder {folder}: {err.strerror or err}") from None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
