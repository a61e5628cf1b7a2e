"""ImageNet-style ImageFolder data with MindSpore's dataset engine: MindCV's InceptionV4 transforms, sharded by rank.

Layout: `<data_dir>/<split>/<class>/<image>` (JPEG, PNG, BMP or TIFF, directly inside the class folder).
Class folders sorted by name give the label indices, as in MindCV's ImageFolderDataset; the val split uses the
train split's class list, so a val folder that lacks a class never shifts the labels. Hidden files and folders
(".DS_Store", ".ipynb_checkpoints") and files lying directly in a split folder are ignored.

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

Bad data policy (`check_image_folder`): stop before training. Unreadable or truncated images, files that are not
images (and folders nested in a class folder, whose images would not be read), empty class folders, val classes
unknown to train and a missing split each raise `DataError` (a `RecipeError`: the CLI prints one line and exits 2)
naming the count and the first few paths, e.g.
"data: 2 unreadable images in /d/train (first: a/1.JPEG: truncated, b/2.JPEG: not an image)". Stopping beats
skipping: a broken extraction or a half-copied volume should be fixed, not silently trained around.
The check is cheap: it reads each image's first 16 bytes and last 1 KiB (format magic, JPEG end-of-image marker,
PNG IEND chunk) and fully decodes only the suspects; `deep=True` decodes every image with Pillow. Measured here
(2 busy cores, page cache warm): 2.5-9k files/s, i.e. 2-9 minutes for ImageNet's 1.28M training images. A successful
check can be cached in `cache_dir` (keyed by the split's path and its list of file names), so restarts of a long
run skip the reads; a file changed in place after a successful check is not re-read.

AutoAugment: MindCV 0.3.0 runs a Python port of timm's AutoAugment (mindcv/data/auto_augment.py), one eager
MindSpore op per sub-operation per image, under the GIL. incv4 uses MindSpore's C++ `vision.AutoAugment` with the
IMAGENET policy: the same 25 sub-policies (the paper's ImageNet policy) with the same probabilities and magnitude
indices, fill value the recipe mean, interpolation the recipe's. Differences: magnitudes map to arguments as in
torchvision (e.g. Rotate level 9 = 30 degrees, not 27; Color/Contrast/Sharpness/Brightness factor 1 +- 0.1*level
with a random sign, not 0.1 + 0.18*level) and there is no per-image magnitude noise (MindCV draws N(level, 0.5));
MindCV's Posterize passes 8 - bits_to_keep where MindSpore expects the bits to keep, so MindCV posterizes to 1-2
bits where the paper (and incv4) keep 4-8. Random erasing follows MindSpore's `vision.RandomErasing` as MindCV uses it
(area ~ U(re_scale), aspect ~ U(re_ratio), up to re_max_attempts tries, value re_value after normalisation), in
a few NumPy lines per image.

Speed: the source is MindSpore's C++ ImageFolderDataset whenever it sees exactly the files listed here (else a
Python source over the listed files), decode is fused with the random-resized crop (RandomCropDecodeResize), and
every transform but random erasing is a C++ op. `normalize=False` makes the pipelines yield uint8 NCHW images and
leaves the normalisation to the device (`normalizer(recipe)`, a Cell without parameters): a quarter of the bytes
to batch and copy, and no float work on the host.

`mindspore` is imported inside the functions that build pipelines, so `check_image_folder` and `DataError` stay
importable without it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from incv4.trainer.recipe import RecipeError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")
SHOWN_PATHS = 3  # how many example paths an error message lists per kind of problem


class DataError(RecipeError):
    """A data problem found before training, in one line with the count and the first few paths."""


# --------------------------------------------------------------------------------------------------------------
# Listing an ImageFolder split


@dataclass
class ImageFolder:
    """The images of one split: `paths[i]` (relative to `root`) has label `labels[i]`; `classes[label]` is a name."""

    root: str
    classes: list
    paths: np.ndarray  # bytes, relative to root
    labels: np.ndarray  # int32
    mindspore_agrees: Optional[bool] = None  # whether ImageFolderDataset sees exactly these files (probed once)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.paths[index]))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(split_dir: str) -> list:
    """Sorted class folder names of a split (hidden folders ignored)."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not _is_hidden(e.name))


def _scan_class(class_dir: str):
    """(image files, other entries) directly inside a class folder, sorted, hidden entries skipped. Like MindSpore's
    ImageFolderDataset (and so MindCV), images in nested folders are not read: a nested folder is an "other"."""
    images, others = [], []
    with os.scandir(class_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if _is_hidden(entry.name):
                continue
            if entry.is_dir():
                others.append(entry.name + "/")
            else:
                (images if _is_image_name(entry.name) else others).append(entry.name)
    return images, others


def _split_dir(data_dir: str, split: str) -> str:
    if not os.path.isdir(data_dir):
        raise DataError(f"data: directory '{data_dir}' does not exist")
    path = os.path.join(data_dir, split)
    if not os.path.isdir(path):
        raise DataError(f"data: split '{split}' not found: no folder {path}")
    return path


def list_image_folder(data_dir: str, split: str, classes: Optional[Sequence[str]] = None) -> ImageFolder:
    """List a split's images and labels. `classes` (the train split's, for val) fixes the label of each folder;
    folders not in it are refused by `check_image_folder` and ignored here."""
    split_dir = _split_dir(data_dir, split)
    found = class_folders(split_dir)
    classes = list(found if classes is None else classes)
    if not classes:
        raise DataError(f"data: {split_dir} has no class folders")
    paths, labels = [], []
    present = set(found)
    for label, name in enumerate(classes):
        if name not in present:
            continue
        images, _ = _scan_class(os.path.join(split_dir, name))
        paths.extend(os.path.join(name, rel) for rel in images)
        labels.extend([label] * len(images))
    if not paths:
        raise DataError(f"data: {split_dir} has no images")
    return ImageFolder(split_dir, classes, np.array([os.fsencode(p) for p in paths]),
                       np.array(labels, dtype=np.int32))


# --------------------------------------------------------------------------------------------------------------
# Checking a dataset before training

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF8", "gif"),
    (b"RIFF", "webp"),
)
_UNDECODABLE = ("gif", "webp")  # MindSpore's C++ Decode and RandomCropDecodeResize refuse them
_TAIL = 1024


def _header_problem(path: str) -> Optional[str]:
    """Why a file cannot be an intact image, from its first and last bytes; None if it looks intact."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, 16, 0)
            tail = os.pread(fd, _TAIL, max(0, size - _TAIL)) if size else b""
        finally:
            os.close(fd)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if size == 0:
        return "empty file"
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is None:
        return "not an image"
    if kind in _UNDECODABLE:
        return f"{kind.upper()} is not supported (use JPEG, PNG, BMP or TIFF)"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return "no JPEG end marker"
    if kind == "png" and b"IEND" not in tail:
        return "truncated"
    if kind == "bmp" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
        return "truncated"
    return None


def _decode_problem(path: str) -> Optional[str]:
    """Why Pillow cannot decode a file completely; None if it decodes."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except OSError as err:
        text = str(err).lower()
        return "truncated" if "truncated" in text else "cannot be decoded"
    except Exception:  # Pillow raises many kinds for corrupt data
        return "cannot be decoded"
    return None


def _image_problem(path: str, deep: bool) -> Optional[str]:
    problem = _header_problem(path)
    if problem == "no JPEG end marker":
        # Truncated, or intact with more than 1 KiB of bytes after the end marker: let the decoder decide.
        return "truncated" if _decode_problem(path) else None
    if problem is None and deep:
        return _decode_problem(path)
    return problem


@dataclass
class SplitReport:
    split: str
    path: str
    classes: int = 0
    images: int = 0
    unreadable: list = field(default_factory=list)  # "class/file: reason"
    non_images: list = field(default_factory=list)
    empty_classes: list = field(default_factory=list)
    unknown_classes: list = field(default_factory=list)
    from_cache: bool = False

    def problems(self) -> list:
        parts = []
        for items, one, many in ((self.unreadable, "unreadable image", "unreadable images"),
                                 (self.non_images, "non-image file", "non-image files"),
                                 (self.empty_classes, "empty class folder", "empty class folders"),
                                 (self.unknown_classes, "class folder not in the train split",
                                  "class folders not in the train split")):
            if items:
                shown = ", ".join(items[:SHOWN_PATHS]) + (", ..." if len(items) > SHOWN_PATHS else "")
                parts.append(f"{len(items)} {one if len(items) == 1 else many} in {self.path} (first: {shown})")
        return parts


def check_image_folder(data_dir: str, splits: Iterable[str] = ("train", "val"), deep: bool = False,
                       cache_dir: Optional[str] = None, workers: int = 4) -> list:
    """Check the splits of an ImageFolder before training; return a `SplitReport` per split, or raise `DataError`
    (one line) describing every problem found. The first split is the one whose classes define the labels."""
    splits = list(splits)
    reports = []
    train_classes = None
    for split in splits:
        split_dir = _split_dir(data_dir, split)  # a missing split stops here, before any file is read
        reports.append(_check_split(split, split_dir, train_classes, deep, cache_dir, workers))
        if train_classes is None:
            train_classes = set(class_folders(split_dir))
    problems = [p for r in reports for p in r.problems()]
    if problems:
        raise DataError("data: " + "; ".join(problems))
    return reports


def _check_split(split: str, split_dir: str, train_classes, deep: bool, cache_dir: Optional[str],
                 workers: int) -> SplitReport:
    report = SplitReport(split, split_dir)
    classes = class_folders(split_dir)
    report.classes = len(classes)
    if not classes:
        report.empty_classes.append("(no class folders at all)")
        return report
    images = []
    for name in classes:
        found, others = _scan_class(os.path.join(split_dir, name))
        if train_classes is not None and name not in train_classes:
            report.unknown_classes.append(name)
        if not found:
            report.empty_classes.append(name)
        report.non_images.extend(os.path.join(name, rel) for rel in others)
        images.extend(os.path.join(name, rel) for rel in found)
    report.images = len(images)

    fingerprint = _fingerprint(split_dir, images, deep)
    if _cache_hit(cache_dir, split_dir, fingerprint):
        report.from_cache = True
        return report
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # file reads release the GIL
        results = pool.map(lambda rel: _image_problem(os.path.join(split_dir, rel), deep), images, chunksize=256)
        report.unreadable = [f"{rel}: {problem}" for rel, problem in zip(images, results) if problem]
    if not report.problems():
        _cache_store(cache_dir, split_dir, fingerprint)
    return report


def _fingerprint(split_dir: str, images: list, deep: bool) -> str:
    digest = hashlib.sha256(f"{os.path.abspath(split_dir)}\0{deep}\0".encode())
    for rel in images:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def _cache_file(cache_dir: str, split_dir: str) -> str:
    key = hashlib.sha256(os.path.abspath(split_dir).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f".incv4-data-check-{key}.json")


def _cache_hit(cache_dir: Optional[str], split_dir: str, fingerprint: str) -> bool:
    if not cache_dir:
        return False
    try:
        with open(_cache_file(cache_dir, split_dir), encoding="utf-8") as fh:
            return json.load(fh).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


def _cache_store(cache_dir: Optional[str], split_dir: str, fingerprint: str) -> None:
    """Best effort: a read-only or missing cache folder only costs the next run a re-check."""
    if not cache_dir or not os.path.isdir(cache_dir):
        return
    target = _cache_file(cache_dir, split_dir)
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", dir=cache_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"split_dir": os.path.abspath(split_dir), "fingerprint": fingerprint}, fh)
        os.replace(tmp, target)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------------------------
# Transforms (MindCV's create_transforms for the recipe)


def _interpolation(name: str):
    from mindspore.dataset.vision import Inter

    return getattr(Inter, name.upper(), Inter.BILINEAR)


def train_transforms(recipe, normalize: bool = True) -> list:
    """Per-image training transforms, all C++ ops: MindCV's transforms_imagenet_train for the recipe up to random
    erasing, which `RandomErasing.from_recipe` adds in a map of its own (a Python op in the same op list as the C++
    ones measured 0.6 ms per 299px image slower). normalize=False ends with uint8 CHW images, to be normalised on
    the device by `normalizer(recipe)`."""
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


def _to_chw(recipe, normalize: bool) -> list:
    from mindspore.dataset import vision

    # HWC2CHW on uint8 before Normalize moves a quarter of the bytes MindCV's Normalize-then-transpose moves.
    ops = [vision.HWC2CHW()]
    if normalize:
        ops.append(vision.Normalize(mean=list(recipe.mean), std=list(recipe.std), is_hwc=False))
    return ops


def _auto_augment(recipe, interpolation):
    from mindspore.dataset import vision

    policy = str(recipe.auto_augment)
    fill = tuple(min(255, int(round(m))) for m in recipe.mean)
    if policy == "autoaug":
        return vision.AutoAugment(policy=vision.AutoAugmentPolicy.IMAGENET, interpolation=interpolation,
                                  fill_value=fill)
    if policy == "trivialaugwide":
        return vision.TrivialAugmentWide(interpolation=interpolation, fill_value=fill)
    if policy.startswith("randaug"):
        num_ops, magnitude = 2, 9
        for part in policy.split("-")[1:]:
            if part.startswith("n") and part[1:].isdigit():
                num_ops = int(part[1:])
            elif part.startswith("m") and part[1:].isdigit():
                magnitude = int(part[1:])
        return vision.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=max(31, magnitude + 1),
                                  interpolation=interpolation, fill_value=fill)
    raise RecipeError(f"recipe key 'auto_augment': '{policy}' is not supported "
                      f"(use autoaug, randaug-mM-nN, trivialaugwide or null)")


def eval_transforms(recipe, normalize: bool = True) -> list:
    """MindCV's transforms_imagenet_eval: decode, resize to floor(image_resize / crop_pct), center crop."""
    from mindspore.dataset import vision

    scale_size = int(math.floor(recipe.image_resize / recipe.crop_pct))
    return [vision.Decode(), vision.Resize(scale_size, interpolation=_interpolation(recipe.interpolation)),
            vision.CenterCrop(recipe.image_resize)] + _to_chw(recipe, normalize)


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


# --------------------------------------------------------------------------------------------------------------
# Datasets


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


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _workers(recipe, override: Optional[int]) -> int:
    wanted = override if override is not None else recipe.num_parallel_workers
    return max(1, min(int(wanted), _available_cores()))


def _check_rank(rank_id: int, rank_size: int) -> None:
    if rank_size < 1 or not 0 <= rank_id < rank_size:
        raise DataError(f"data: rank {rank_id} is not within rank_size {rank_size}")


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
        classes = class_folders(train_dir) if os.path.isdir(train_dir) else None
    folder = list_image_folder(recipe.data_dir, recipe.val_split, classes)
    if len(folder) < rank_size:
        raise DataError(f"data: {folder.root} has {len(folder)} images, fewer than the {rank_size} ranks")
    workers = _workers(recipe, num_parallel_workers)
    sampler = ds.SubsetSampler(eval_shard(len(folder), rank_id, rank_size).tolist())
    dataset = _source(folder, sampler, workers)
    dataset = dataset.map(operations=eval_transforms(recipe, normalize), input_columns="image",
                          num_parallel_workers=workers)
    return dataset.batch(recipe.batch_size, drop_remainder=False, num_parallel_workers=workers)
