"""MindCV's ckpt_path: start a run from pretrained weights, loaded by name. Parameters whose shape differs (a new
classifier for another num_classes) keep their fresh initialisation and are named in the log line."""
from __future__ import annotations

from typing import Callable

from incv4.trainer.checkpoint.given import require_checkpoint_file
from incv4.trainer.recipe import RecipeError


def ema_weights(params: dict, ckpt_path: str) -> dict:
    """With `ema`, a checkpoint's `ema.<name>` weights under their network names, as MindCV's
    load_model_checkpoint(ema=True) takes them; a checkpoint without them is a RecipeError (one line)."""
    found = {name[len("ema."):]: value for name, value in params.items() if name.startswith("ema.")}
    if not found:
        raise RecipeError(f"recipe key 'ema': checkpoint '{ckpt_path}' holds no EMA weights (ema.*); "
                          f"set ema: false to use its weights")
    return found


def load_finetune_weights(network, ckpt_path: str, say: Callable[[str], None] = print, ema: bool = False) -> None:
    """With `ema`, the checkpoint's EMA weights (MindCV's create_model(checkpoint_path, ema=True))."""
    require_checkpoint_file(ckpt_path)  # a directory or unreadable path: one line, exit 2
    import mindspore as ms

    try:
        params = ms.load_checkpoint(ckpt_path)
    except Exception as err:
        raise RecipeError(f"recipe key 'ckpt_path': checkpoint '{ckpt_path}' does not load ({_first_line(err)})") \
            from None
    if ema:
        params = ema_weights(params, ckpt_path)
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
