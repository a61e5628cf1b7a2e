"""MindCV's InceptionV4 image transforms for a recipe (MindCV's create_transforms), random erasing, and the
in-graph normalizer for uint8 pipelines.

Every transform but random erasing is a MindSpore C++ op, and decode is fused with the random-resized crop
(RandomCropDecodeResize). Random erasing follows MindSpore's `vision.RandomErasing` as MindCV uses it (area ~
U(re_scale), aspect ~ U(re_ratio), up to re_max_attempts tries, value re_value after normalisation), in a few
NumPy lines per image; the pipeline runs it in a map of its own, because a Python op in the same op list as the
C++ ones makes that whole map slower.

`normalize=False` ends the transforms with uint8 CHW images and leaves the normalisation to the device
(`normalizer(recipe)`, a Cell without parameters): a quarter of the bytes to batch and copy, and no float work
on the host.

AutoAugment: MindCV runs a Python port of timm's AutoAugment (mindcv/data/auto_augment.py), one eager MindSpore
op per sub-operation per image, under the GIL. incv4 uses MindSpore's C++ `vision.AutoAugment` with the IMAGENET
policy: the same 25 sub-policies (the paper's ImageNet policy) with the same probabilities and magnitude indices,
fill value the recipe mean, interpolation the recipe's. Differences: magnitudes map to arguments as in torchvision
(e.g. Rotate level 9 = 30 degrees, not 27; Color/Contrast/Sharpness/Brightness factor 1 +- 0.1*level with a random
sign, not 0.1 + 0.18*level) and there is no per-image magnitude noise (MindCV draws N(level, 0.5)); MindCV's
Posterize passes 8 - bits_to_keep where MindSpore expects the bits to keep, so MindCV posterizes to 1-2 bits where
the paper (and incv4) keep 4-8.

RandAugment (`randaug-...`, its parts read as MindCV reads them by augment_policy): MindSpore's C++
`vision.RandAugment`, n ops per image at MindCV's level L, with 11 magnitude bins so that L is L/10 of each op's
range as in MindCV (Rotate 3*L degrees, Shear 0.03*L, Translate 4.5*L % of the image). Differences: MindSpore's op
set is torchvision's (Identity where MindCV has Invert), a chosen op always applies (MindCV: with probability 0.5),
the enhance ops are MindCV's `-inc` ones (factor 1 +- 0.09*L with a random sign; MindCV without -inc: 0.1 + 0.18*L)
and there is no magnitude noise (MindCV: N(L, 0.5)).

`mindspore` is imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from incv4.trainer.data.augment_policy import LEVEL_DENOM, parse as parse_policy


def _interpolation(name: str):
    from mindspore.dataset.vision import Inter

    return getattr(Inter, name.upper(), Inter.BILINEAR)


def train_transforms(recipe, normalize: bool = True) -> list:
    """Per-image training transforms, all C++ ops: MindCV's transforms_imagenet_train for the recipe up to random
    erasing, which `RandomErasing.from_recipe` adds in a map of its own. normalize=False ends with uint8 CHW
    images, to be normalised on the device by `normalizer(recipe)`."""
    from mindspore.dataset import vision

    interpolation = _interpolation(recipe.interpolation)
    ops = [vision.RandomCropDecodeResize(size=recipe.image_resize, scale=tuple(recipe.scale),
                                         ratio=tuple(recipe.ratio), interpolation=interpolation)]
    if recipe.hflip > 0:
        ops.append(vision.RandomHorizontalFlip(prob=recipe.hflip))
    if recipe.vflip > 0:
        ops.append(vision.RandomVerticalFlip(prob=recipe.vflip))
    if recipe.auto_augment:
        ops.append(_auto_augment(recipe, interpolation))
    elif recipe.color_jitter is not None:
        jitter = float(recipe.color_jitter)
        ops.append(vision.RandomColorAdjust(brightness=jitter, contrast=jitter, saturation=jitter))
    return ops + _to_chw(recipe, normalize)


def eval_transforms(recipe, normalize: bool = True) -> list:
    """MindCV's transforms_imagenet_eval: decode, resize to floor(image_resize / crop_pct), center crop."""
    from mindspore.dataset import vision

    scale_size = int(math.floor(recipe.image_resize / recipe.crop_pct))
    return [vision.Decode(), vision.Resize(scale_size, interpolation=_interpolation(recipe.interpolation)),
            vision.CenterCrop(recipe.image_resize)] + _to_chw(recipe, normalize)


def _to_chw(recipe, normalize: bool) -> list:
    from mindspore.dataset import vision

    # HWC2CHW on uint8 before Normalize moves a quarter of the bytes MindCV's Normalize-then-transpose moves.
    ops = [vision.HWC2CHW()]
    if normalize:
        ops.append(vision.Normalize(mean=list(recipe.mean), std=list(recipe.std), is_hwc=False))
    return ops


def _auto_augment(recipe, interpolation):
    """MindSpore's op for the recipe's policy, read as MindCV reads it (augment_policy; the recipe has refused
    every string it cannot run)."""
    from mindspore.dataset import vision

    policy = parse_policy(recipe.auto_augment)
    fill = tuple(min(255, int(round(m))) for m in recipe.mean)
    if policy.name == "autoaug":
        return vision.AutoAugment(policy=vision.AutoAugmentPolicy.IMAGENET, interpolation=interpolation,
                                  fill_value=fill)
    if policy.name == "trivialaugwide":
        return vision.TrivialAugmentWide(interpolation=interpolation, fill_value=fill)
    # LEVEL_DENOM + 1 bins put MindSpore's magnitude index on MindCV's scale: level L is L/10 of each op's range
    return vision.RandAugment(num_ops=policy.num_ops, magnitude=policy.level, num_magnitude_bins=LEVEL_DENOM + 1,
                              interpolation=interpolation, fill_value=fill)


class RandomErasing:
    """MindSpore's vision.RandomErasing as MindCV uses it, on one CHW image: with probability `prob` erase one
    rectangle of area ~ U(scale) * H * W and aspect ~ U(ratio) (up to max_attempts draws that fit), else leave it.
    `fill` is the value written per channel: re_value for normalised images, re_value * std + mean (rounded)
    for uint8 images that are normalised later, which gives the same picture."""

    def __init__(self, prob: float, scale: Sequence[float], ratio: Sequence[float], fill=0.0,
                 max_attempts: int = 10, seed: Optional[int] = None):
        self.prob, self.scale, self.ratio = prob, tuple(scale), tuple(ratio)
        self.fill = np.asarray(fill).reshape(-1, 1, 1)
        self.max_attempts = max_attempts
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_recipe(cls, recipe, normalized: bool = True, seed=None) -> "RandomErasing":
        if normalized:
            fill = float(recipe.re_value)
        else:
            fill = np.clip(np.rint(recipe.re_value * np.asarray(recipe.std) + np.asarray(recipe.mean)), 0, 255)
            fill = fill.astype(np.uint8)
        return cls(recipe.re_prob, recipe.re_scale, recipe.re_ratio, fill, recipe.re_max_attempts, seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.rng.random() >= self.prob:
            return image
        box = self.box(image.shape[-2], image.shape[-1])
        if box is None:
            return image
        if not image.flags.writeable:
            image = image.copy()
        top, left, h, w = box
        image[:, top:top + h, left:left + w] = self.fill
        return image

    def box(self, height: int, width: int):
        """(top, left, h, w) of a rectangle to erase, or None after max_attempts misses (image left as is)."""
        area = height * width
        for _ in range(self.max_attempts):
            erase_area = self.rng.uniform(*self.scale) * area
            aspect = self.rng.uniform(*self.ratio)
            w = int(round(math.sqrt(erase_area * aspect)))
            h = int(round(w / aspect))
            if h < height and w < width:
                return int(self.rng.integers(0, height - h + 1)), int(self.rng.integers(0, width - w + 1)), h, w
        return None


def normalizer(recipe):
    """A MindSpore Cell for `normalize=False` pipelines: uint8 NCHW -> float32 (x - mean) / std, on the device.
    It holds no Parameters, so checkpoints are unchanged when the trainer puts it in front of the network."""
    import mindspore as ms
    from mindspore import nn, ops

    class Normalizer(nn.Cell):
        def __init__(self, mean, std):
            super().__init__()
            self.mean = ms.Tensor(np.asarray(mean, np.float32).reshape(1, -1, 1, 1))
            self.scale = ms.Tensor((1.0 / np.asarray(std, np.float32)).reshape(1, -1, 1, 1))

        def construct(self, images):
            return (ops.cast(images, ms.float32) - self.mean) * self.scale

    return Normalizer(recipe.mean, recipe.std)


def with_normalizer(recipe, network):
    """`network` taking the uint8 batches of `normalize=False` pipelines, normalised in the graph first (as timm's
    prefetcher does on the GPU). Parameter names stay the network's own, so checkpoints are unchanged."""
    from mindspore import nn

    class NormalizedInput(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.normalize = normalizer(recipe)
            self.network = network

        def construct(self, images):
            return self.network(self.normalize(images))

    return NormalizedInput()
