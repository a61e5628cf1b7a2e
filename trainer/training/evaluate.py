"""Top-1/top-5 evaluation over a (sharded) val set, counts summed across ranks; and the `incv4 validate` job.

Every rank evaluates its own disjoint shard; the correct counts and the sample count are all-reduced, so the
accuracy is over the whole val set exactly once (MindCV's eval under data parallel does the same). Batches are
padded to the recipe's batch size so a short last batch never costs a second graph compile; padded rows are not
counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass
class Accuracy:
    top1: float
    top5: float
    samples: int

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "samples": self.samples}


def _pad(batch: np.ndarray, size: int) -> np.ndarray:
    if batch.shape[0] == size:
        return batch
    pad = np.zeros((size - batch.shape[0],) + batch.shape[1:], dtype=batch.dtype)
    return np.concatenate([batch, pad], axis=0)


def topk_counts(logits: np.ndarray, labels: np.ndarray, k: int = 5) -> tuple[int, int]:
    """(top-1 correct, top-k correct) for one batch of logits."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    hits = order == labels.reshape(-1, 1)
    return int(hits[:, 0].sum()), int(hits.any(axis=1).sum())


def evaluate(network, dataset, batch_size: int, rank_size: int = 1,
             before_first_call: Optional[Callable] = None) -> Accuracy:
    """Accuracy of `network` (set to eval mode here) over `dataset` summed over all `rank_size` ranks.
    `before_first_call(network, batch)` runs once before the eval graph's first call (compile sharing)."""
    import mindspore as ms

    network.set_train(False)
    correct1 = correct5 = samples = 0
    for images, labels in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        n = images.shape[0]
        batch = ms.Tensor(_pad(images, batch_size))
        if before_first_call is not None:
            before_first_call(network, batch)
            before_first_call = None
        logits = network(batch).asnumpy()[:n]
        c1, c5 = topk_counts(logits, labels)
        correct1, correct5, samples = correct1 + c1, correct5 + c5, samples + n
    if rank_size > 1:
        correct1, correct5, samples = _sum_across_ranks([correct1, correct5, samples])
    network.set_train(True)
    if samples == 0:
        return Accuracy(0.0, 0.0, 0)
    return Accuracy(correct1 / samples, correct5 / samples, int(samples))


def _sum_across_ranks(values: list) -> list:
    import mindspore as ms
    from mindspore import nn, ops

    class _AllReduceSum(nn.Cell):
        def __init__(self):
            super().__init__()
            self.all_reduce = ops.AllReduce()

        def construct(self, x):
            return self.all_reduce(x)

    # float32 (every collective backend has it) counts exactly up to 2**24 images, far beyond ImageNet's 50,000
    total = _AllReduceSum()(ms.Tensor(np.array(values, dtype=np.float32))).asnumpy()
    return [int(round(v)) for v in total]


def run_validate(recipe, ckpt_path: str, log: Callable[[str], None] = print) -> Accuracy:
    """MindCV's validate.py: build the network, load `ckpt_path` (or, with `pretrained` and no ckpt_path, MindCV's
    published weights), evaluate the val split on one process."""
    from incv4.trainer.checkpoint.given import require_checkpoint_file
    from incv4.trainer.recipe import RecipeError

    if not ckpt_path and not recipe.pretrained:
        raise RecipeError("recipe key 'ckpt_path': validate needs a checkpoint (give --ckpt-path)")
    if ckpt_path:
        require_checkpoint_file(ckpt_path)  # before MindSpore loads: a wrong path is one line, exit 2
    from incv4.trainer import cpu_backend
    from incv4.trainer.data import pipeline
    from incv4.trainer.data.transforms import with_normalizer
    from incv4.trainer.model.amp import cast_network
    from incv4.trainer.model.inception_v4 import inception_v4
    from incv4.trainer.training.world import choose_device, set_context, usable_amp_level

    device = choose_device(recipe.device_target, log)
    cpu_backend.prepare(device, log)  # before MindSpore runs a kernel
    set_context(recipe, device, log)  # with jit_level, as MindCV's validate.py
    network = inception_v4(num_classes=recipe.num_classes, in_channels=recipe.in_channels,
                           drop_rate=recipe.drop_rate, bn_momentum=recipe.bn_momentum,
                           bn_beta_init=recipe.bn_beta_init)
    if ckpt_path:
        _load_checkpoint(network, recipe, ckpt_path)
    else:
        _load_pretrained(network, recipe, log)
    # MindCV's validate.py casts the evaluated network by val_amp_level (evaluation while training runs the trained
    # network, cast by amp_level, as MindCV's does)
    network = cast_network(network, usable_amp_level("val_amp_level", recipe.val_amp_level, device, log))
    dataset = pipeline.create_eval_dataset(recipe, 0, 1, normalize=False)
    return evaluate(with_normalizer(recipe, network), dataset, recipe.batch_size, rank_size=1)


def _load_checkpoint(network, recipe, ckpt_path: str) -> None:
    """The checkpoint's weights (its EMA weights with `ema`, as MindCV's validate.py) into `network`, all of them."""
    import mindspore as ms

    from incv4.trainer.recipe import RecipeError

    try:
        params = ms.load_checkpoint(ckpt_path, crc_check=True)
    except Exception as err:
        raise ValidateError(f"checkpoint '{ckpt_path}' does not load: {_first_line(err)}") from None
    if recipe.ema:
        from incv4.trainer.model.finetune import ema_weights

        params = ema_weights(params, ckpt_path)
    mismatched = [n for n, p in network.parameters_and_names()
                  if n in params and tuple(params[n].shape) != tuple(p.shape)]
    if mismatched:
        raise RecipeError(f"recipe key 'num_classes': checkpoint '{ckpt_path}' does not fit the recipe's network "
                          f"({mismatched[0]} has shape {tuple(params[mismatched[0]].shape)})")
    missing, _ = ms.load_param_into_net(network, params, strict_load=False)
    if missing:
        raise ValidateError(f"checkpoint '{ckpt_path}' lacks {len(missing)} network parameters "
                            f"(e.g. {missing[0]})")


def _load_pretrained(network, recipe, log: Callable[[str], None]) -> None:
    from incv4.trainer.model.pretrained import PretrainedUnavailable, load_pretrained

    try:
        load_pretrained(network, recipe.num_classes, recipe.in_channels, log)
    except PretrainedUnavailable as err:  # the server may answer next time: a failure, not a usage error
        raise ValidateError(str(err)) from None


class ValidateError(RuntimeError):
    """A checkpoint that cannot be evaluated (damaged, incomplete): one line, exit 1."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def format_table(acc: Accuracy, ckpt_path: Optional[str] = None) -> str:
    lines = [f"top-1     {acc.top1 * 100:.2f}%", f"top-5     {acc.top5 * 100:.2f}%", f"samples   {acc.samples}"]
    if ckpt_path:
        lines.append(f"checkpoint {ckpt_path}")
    return "\n".join(lines)
