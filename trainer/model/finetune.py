"""MindCV's ckpt_path: start a run from pretrained weights, loaded by name. Parameters whose shape differs (a new
classifier for another num_classes) keep their fresh initialisation and are named in the log line."""
from __future__ import annotations

from typing import Callable

from incv4.trainer.checkpoint.given import require_checkpoint_file
from incv4.trainer.recipe import RecipeError


def load_finetune_weights(network, ckpt_path: str, say: Callable[[str], None] = print) -> None:
    require_checkpoint_file(ckpt_path)  # a directory or unreadable path: one line, exit 2
    import mindspore as ms

    try:
        params = ms.load_checkpoint(ckpt_path)
    except Exception as err:
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' does not load ({_first_line(err)})") \
            from None
    usable, skipped = {}, []
    for name, param in network.parameters_and_names():
        if name not in params:
            skipped.append(f"{name} (absent)")
        elif tuple(params[name].shape) != tuple(param.shape):
            skipped.append(f"{name} (checkpoint {tuple(params[name].shape)}, network {tuple(param.shape)})")
        else:
            usable[name] = params[name]
    if not usable:
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' has no parameter of this network")
    ms.load_param_into_net(network, usable, strict_load=False)
    say(f"fine-tuning from {ckpt_path}: loaded {len(usable)} parameters"
        + (f"; re-initialised {len(skipped)}: {', '.join(skipped)}" if skipped else ""))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
