"""The MindSpore datasets of a run: the sharded training pipeline and the eval pipeline of an ImageFolder.

Data order and sharding (`create_train_dataset`): epoch e's order is a permutation drawn from (recipe seed, e) and
is the same on every rank; rank r takes every rank_size-th image of it starting at r, cut to
floor(N / rank_size) images, so shards are disjoint and equal. The N mod rank_size images left over are not seen
that epoch (a different few each epoch, since the permutation changes). Because the order is a pure function of
(seed, epoch, rank, rank_size), a resumed run passes `epoch=` and gets exactly the order the first run had for that
epoch. Random augmentations draw from MindSpore's dataset seed (`mindspore.dataset.config.set_seed`, the trainer's
job; random erasing from that seed, the rank and the epoch) and are not reproduced exactly with several workers.

Eval sharding (`create_eval_dataset`): rank r takes images r, r + rank_size, ... in file order: disjoint shards
that cover the val set exactly once, with no padding and the last partial batch kept, so top-1/top-5 counts summed
over ranks are exact.

The source is MindSpore's C++ ImageFolderDataset whenever it sees exactly the listed files (else a Python source
over the listed files); the transforms come from `transforms`, the listing from `folder`.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from incv4.trainer.data.check import available_cores
from incv4.trainer.data.folder import DataError, ImageFolder, class_folders, list_image_folder
from incv4.trainer.data.transforms import RandomErasing, eval_transforms, train_transforms
from incv4.trainer.recipe import RecipeError

class _FileSource:
    """Random-access source for GeneratorDataset: (raw file bytes, label). Decoding happens in C++ ops."""

    def __init__(self, folder: ImageFolder):
        self.folder = folder

    def __getitem__(self, index):
        with open(self.folder.path(int(index)), "rb") as fh:
            data = fh.read()
        return np.frombuffer(data, dtype=np.uint8), self.folder.labels[int(index)]

    def __len__(self):
        return len(self.folder)


def _source(folder: ImageFolder, sampler, workers: int):
    """MindSpore's C++ ImageFolderDataset when it sees exactly the files listed here (the usual case: every split
    folder a known class, no nested folders), else a Python source over the listed files. Both index the images
    in the same order (sorted class folders, sorted file names), so a sampler's indices mean the same thing."""
    import mindspore.dataset as ds

    extensions = sorted({os.path.splitext(os.fsdecode(p))[1] for p in folder.paths})
    labels = {name: i for i, name in enumerate(folder.classes)}
    if folder.mindspore_agrees is None:  # probed once per listing: a directory scan costs seconds on ImageNet
        folder.mindspore_agrees = set(class_folders(folder.root)) <= set(labels) and ds.ImageFolderDataset(
            folder.root, extensions=extensions, class_indexing=labels, shuffle=False).get_dataset_size() == len(folder)
    if folder.mindspore_agrees:
        return ds.ImageFolderDataset(folder.root, extensions=extensions, class_indexing=labels, decode=False,
                                     sampler=sampler, num_parallel_workers=workers)
    return ds.GeneratorDataset(_FileSource(folder), column_names=["image", "label"], sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=False)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The global data order of an epoch: the same on every rank, a pure function of (seed, epoch)."""
    if not shuffle:
        return np.arange(size)
    return np.random.default_rng([seed, epoch]).permutation(size)


def train_shard(size: int, rank_id: int, rank_size: int, seed: int, epoch: int, shuffle: bool = True,
                num_samples: Optional[int] = None) -> np.ndarray:
    """Indices rank `rank_id` reads in `epoch`: every rank_size-th of the epoch order, cut to floor(size/rank_size)
    (at most num_samples), so all shards are disjoint and the same length."""
    per_rank = size // rank_size
    if num_samples:
        per_rank = min(per_rank, num_samples)
    return epoch_order(size, seed, epoch, shuffle)[rank_id::rank_size][:per_rank]


def eval_shard(size: int, rank_id: int, rank_size: int) -> np.ndarray:
    """Indices rank `rank_id` evaluates: rank_id, rank_id + rank_size, ... (disjoint, covering, unpadded)."""
    return np.arange(rank_id, size, rank_size)


def _sampler_class():
    import mindspore.dataset as ds

    class EpochShardSampler(ds.Sampler):
        """Yields `train_shard(...)` for epoch start_epoch, then start_epoch + 1, ... (MindSpore calls __iter__
        once per epoch)."""

        def __init__(self, size, rank_id, rank_size, seed, start_epoch, shuffle, num_samples):
            self.args = (size, rank_id, rank_size, seed)
            self.shuffle, self.limit = shuffle, num_samples
            self.next_epoch = start_epoch
            self.per_rank = len(train_shard(size, rank_id, rank_size, seed, 0, False, num_samples))
            super().__init__(num_samples=self.per_rank)

        def __iter__(self):
            size, rank_id, rank_size, seed = self.args
            epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
            return iter(train_shard(size, rank_id, rank_size, seed, epoch, self.shuffle, self.limit).tolist())

    return EpochShardSampler


def _workers(recipe, override: Optional[int]) -> int:
    wanted = override if override is not None else recipe.num_parallel_workers
    return max(1, min(int(wanted), available_cores()))


def _check_rank(rank_id: int, rank_size: int) -> None:
    if rank_size < 1 or not 0 <= rank_id < rank_size:
        raise DataError(f"data: rank {rank_id} is not within rank_size {rank_size}")


def _check_num_classes(folder: ImageFolder, recipe) -> None:
    """Labels >= num_classes would be trained on or counted as wrong answers: never silently."""
    if len(folder.classes) > recipe.num_classes:
        raise DataError(f"data: {folder.root}/ has {len(folder.classes)} classes but num_classes is "
                        f"{recipe.num_classes}")


def _unsupported_keys(recipe) -> None:
    for key in ("mixup", "cutmix", "aug_repeats", "aug_splits"):
        if recipe[key]:
            raise RecipeError(f"recipe key '{key}': {recipe[key]} is not supported by incv4 (InceptionV4's recipe "
                              f"leaves it off); set it to 0")


def create_train_dataset(recipe, rank_id: int = 0, rank_size: int = 1, epoch: int = 0,
                         num_parallel_workers: Optional[int] = None, folder: Optional[ImageFolder] = None,
                         normalize: bool = True):
    """The training pipeline: (image float32 NCHW, label int32) batches of recipe.batch_size for this rank.

    Returns (dataset, steps_per_epoch). The first epoch iterated is `epoch` (pass the resumed epoch), the next
    one epoch + 1, and so on. `folder` skips listing the split again when the caller already has it.
    normalize=False yields uint8 NCHW images instead (a quarter of the bytes; put `normalizer(recipe)` in front
    of the network)."""
    import mindspore.dataset as ds

    _check_rank(rank_id, rank_size)
    _unsupported_keys(recipe)
    if folder is None:
        folder = list_image_folder(recipe.data_dir, recipe.train_split)
    _check_num_classes(folder, recipe)
    workers = _workers(recipe, num_parallel_workers)
    sampler = _sampler_class()(len(folder), rank_id, rank_size, recipe.seed, epoch, recipe.shuffle,
                               recipe.num_samples)
    batch = recipe.batch_size
    steps = sampler.per_rank // batch if recipe.drop_remainder else -(-sampler.per_rank // batch)
    if steps == 0:
        raise DataError(f"data: {folder.root} has {len(folder)} images, {sampler.per_rank} per rank for "
                        f"{rank_size} ranks: fewer than one batch of {batch}")
    dataset = _source(folder, sampler, workers)
    dataset = dataset.map(operations=train_transforms(recipe, normalize), input_columns="image",
                          num_parallel_workers=workers)
    if recipe.re_prob > 0:
        seed = [ds.config.get_seed(), rank_id, epoch]  # follows the dataset seed the trainer sets
        dataset = dataset.map(operations=RandomErasing.from_recipe(recipe, normalize, seed), input_columns="image",
                              num_parallel_workers=workers)
    return dataset.batch(batch, drop_remainder=recipe.drop_remainder, num_parallel_workers=workers), steps


def create_eval_dataset(recipe, rank_id: int = 0, rank_size: int = 1, num_parallel_workers: Optional[int] = None,
                        classes: Optional[Sequence[str]] = None, normalize: bool = True):
    """The eval pipeline for this rank's disjoint shard of the val split (last partial batch kept).
    Labels follow the train split's classes (`classes`, else listed from the train split when it exists)."""
    import mindspore.dataset as ds

    _check_rank(rank_id, rank_size)
    if classes is None:
        train_dir = os.path.join(recipe.data_dir, recipe.train_split)
        classes = (class_folders(train_dir) if os.path.isdir(train_dir) else None) or None
    folder = list_image_folder(recipe.data_dir, recipe.val_split, classes)
    _check_num_classes(folder, recipe)
    if len(folder) < rank_size:
        raise DataError(f"data: {folder.root} has {len(folder)} images, fewer than the {rank_size} ranks")
    workers = _workers(recipe, num_parallel_workers)
    sampler = ds.SubsetSampler(eval_shard(len(folder), rank_id, rank_size).tolist())
    dataset = _source(folder, sampler, workers)
    dataset = dataset.map(operations=eval_transforms(recipe, normalize), input_columns="image",
                          num_parallel_workers=workers)
    return dataset.batch(recipe.batch_size, drop_remainder=False, num_parallel_workers=workers)
