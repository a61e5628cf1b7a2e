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

Data trail: decoding runs in MindSpore's C++ threads, with no Python call per image to note which file is in
flight. When contract.DATA_TRAIL_ENV names a file (the launcher and the single-process guard set it, trainer/launcher/
supervisor.py), each dataset records there what it reads (split, rank, seed, epoch; rewritten once per epoch, nothing
per image). If the process then dies from a signal, `find_crashing_image` replays that order through MindSpore's
decoder in a child process that notes each file before decoding it, so the file the decoder dies on is named.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from incv4.trainer import contract
from incv4.trainer.data.check import available_cores
from incv4.trainer.data.folder import DataError, ImageFolder, class_folders, list_image_folder
from incv4.trainer.data.transforms import RandomErasing, eval_transforms, train_transforms

# How long the post-mortem replay may decode before it gives up naming the file.
REPLAY_TIMEOUT = 300.0

# The replay: MindSpore's full Decode of each listed file (NUL-separated on stdin), the file's path written to the
# breadcrumb (argv[1]) before it is decoded. A decode that raises is not a crash: the next file is tried.
_REPLAY_CODE = """
import os, sys
import numpy as np
from mindspore.dataset import vision
crumb = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
decode = vision.Decode()
for path in sys.stdin.buffer.read().split(b"\\0"):
    if not path:
        continue
    os.ftruncate(crumb, 0)
    os.pwrite(crumb, path, 0)
    try:
        decode(np.fromfile(os.fsdecode(path), dtype=np.uint8))
    except Exception:
        pass
os.ftruncate(crumb, 0)
"""


# MindSpore's dataset pipeline error for an image an op could not handle (mindspore/dataset/engine/iterators.py
# raises it as a RuntimeError, the op's message inside):
# "map operation: [RandomCropDecodeResize] failed. The corresponding data file is: d/c6/0.JPEG. Decode: image decode
# failed."
_PIPELINE_FILE_ERROR = re.compile(r"map operation: \[(\w+)\] failed\. The corresponding data file is: (.+?)\. (.+)")


def decode_error_line(err: BaseException) -> Optional[str]:
    """The one-line data error for a decoding op of MindSpore's pipeline failing on a named image (permanent: a
    restart decodes the same bytes), or None for any other error (reading the file, or memory, may fail once and
    not again: those stay retryable)."""
    match = _PIPELINE_FILE_ERROR.search(str(err))
    if match is None or "Decode" not in match.group(1) or "memory" in match.group(3).lower():
        return None
    op, path, reason = match.group(1), match.group(2), match.group(3).strip().rstrip(".")
    return f"data: MindSpore's {op} cannot decode {path}: {reason} (replace or remove the image: a restart cannot help)"


def decode_errors_are_permanent(work: Callable[[], int], say: Callable[[str], None]) -> int:
    """`work()`'s exit code; an image MindSpore cannot decode ends it with one `error:` line through `say` and
    USAGE (a data error: a restart would meet the same image). Any other error propagates."""
    try:
        return work()
    except RuntimeError as err:
        line = decode_error_line(err)
        if line is None:
            raise
        say(f"error: {line}")
        return contract.USAGE


def _record_trail(entry: dict) -> None:
    """Add `entry` as the newest dataset of the trail (one per kind: the train and the eval pipeline of a run
    both live). Best effort: without the trail a crash is still reported, only without the file's name."""
    path = os.environ.get(contract.DATA_TRAIL_ENV)
    if not path:
        return
    entries = [e for e in read_trail(path) if e["kind"] != entry["kind"]] + [entry]
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(entries, fh)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def read_trail(path: str) -> List[dict]:
    """The datasets a process recorded in its data trail, newest last; [] when it built none."""
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("kind") in ("train", "eval")]


def trail_candidates(entry: dict) -> List[str]:
    """The images of a trail in the order the process was reading them: for training its shard of the recorded
    epoch, then of the epoch before (MindSpore draws the next epoch's order before the last one is decoded), then
    the rest of the split; for evaluation its eval shard, then the rest."""
    folder = list_image_folder(entry["data_dir"], entry["split"], entry.get("classes"))
    size = len(folder)
    if entry["kind"] == "train":
        args = (size, entry["rank_id"], entry["rank_size"], entry["seed"])
        epoch = entry["epoch"]
        shards = [train_shard(*args, e, entry["shuffle"], entry["num_samples"]) for e in (epoch, epoch - 1) if e >= 0]
    else:
        shards = [eval_shard(size, entry["rank_id"], entry["rank_size"])]
    order = dict.fromkeys(int(i) for shard in shards for i in shard)
    order.update(dict.fromkeys(range(size)))
    return [folder.path(i) for i in order]


def find_crashing_image(trail_path: str, timeout: float = REPLAY_TIMEOUT) -> Optional[str]:
    """The image whose decoding kills MindSpore's decoder, among those the trail says the process was reading;
    None when there is no trail, no image crashes the decoder, or the replay ran out of time."""
    candidates: dict = {}
    for entry in reversed(read_trail(trail_path)):  # the newest dataset first
        try:
            candidates.update(dict.fromkeys(trail_candidates(entry)))
        except (ValueError, OSError, KeyError, TypeError):  # the data changed since: replay what still lists
            continue
    return _replay(candidates, timeout) if candidates else None


def _replay(candidates: Iterable[str], timeout: float) -> Optional[str]:
    fd, crumb = tempfile.mkstemp(prefix="incv4-decode-replay-")
    os.close(fd)
    try:
        done = subprocess.run([sys.executable, "-c", _REPLAY_CODE, crumb], timeout=timeout,
                              input=b"\0".join(os.fsencode(p) for p in candidates), capture_output=True)
        if done.returncode >= 0 or -done.returncode == signal.SIGKILL:
            return None
        with open(crumb, "rb") as fh:
            return os.fsdecode(fh.read()) or None
    except (subprocess.TimeoutExpired, OSError):
        return None
    finally:
        os.remove(crumb)


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

        def __init__(self, size, rank_id, rank_size, seed, start_epoch, shuffle, num_samples, trail=None):
            self.args = (size, rank_id, rank_size, seed)
            self.shuffle, self.limit = shuffle, num_samples
            self.next_epoch = start_epoch
            self.trail = trail  # the data trail's entry, recorded with each epoch drawn
            self.per_rank = len(train_shard(size, rank_id, rank_size, seed, 0, False, num_samples))
            super().__init__(num_samples=self.per_rank)

        def __iter__(self):
            size, rank_id, rank_size, seed = self.args
            epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
            if self.trail is not None:
                _record_trail({**self.trail, "epoch": epoch})
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
    if folder is None:
        folder = list_image_folder(recipe.data_dir, recipe.train_split)
    _check_num_classes(folder, recipe)
    workers = _workers(recipe, num_parallel_workers)
    trail = {"kind": "train", "data_dir": recipe.data_dir, "split": recipe.train_split,
             "classes": list(folder.classes),
             "rank_id": rank_id, "rank_size": rank_size, "seed": recipe.seed, "shuffle": bool(recipe.shuffle),
             "num_samples": recipe.num_samples}
    sampler = _sampler_class()(len(folder), rank_id, rank_size, recipe.seed, epoch, recipe.shuffle,
                               recipe.num_samples, trail)
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
    _record_trail({"kind": "eval", "data_dir": recipe.data_dir, "split": recipe.val_split,
                   "classes": list(folder.classes), "rank_id": rank_id, "rank_size": rank_size})
    dataset = _source(folder, sampler, workers)
    dataset = dataset.map(operations=eval_transforms(recipe, normalize), input_columns="image",
                          num_parallel_workers=workers)
    return dataset.batch(recipe.batch_size, drop_remainder=False, num_parallel_workers=workers)
