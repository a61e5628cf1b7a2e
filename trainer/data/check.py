"""Checking an ImageFolder before training, so bad data stops a run before it starts.

Unreadable or truncated images, files that are not images (and folders nested in a class folder, whose images
would not be read), entries that are not regular files (a named pipe is never opened), empty class folders, val
classes unknown to train and a missing split each raise `DataError` (a `RecipeError`: the CLI prints one line and
exits 2) naming the count and the first few paths, e.g.
"data: 2 unreadable images in /d/train (first: a/1.JPEG: truncated, b/2.JPEG: not an image)". Stopping beats
skipping: a broken extraction or a half-copied volume should be fixed, not silently trained around, and an image
the decoder cannot handle may kill a data worker with a signal instead of raising an error.

By default every image is fully decoded with Pillow (`deep=True`), in parallel threads (Pillow's decoders release
the GIL). A successful check is cached in a folder of this node (`node_cache_dir()`, or `cache_dir`), keyed by the
split's path and the name, size and modification time of each image, so the launcher checks once per node and a
restart only stats the files; the launcher's workers do not check again while the folders are as the launcher saw
them (`shared_listings_env`, folder.py's node listing). `deep=False` reads only each image's first 16 bytes and last
1 KiB (format magic, JPEG end-of-image marker, PNG IEND chunk) and decodes only the suspects.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Optional

from incv4.trainer.data.folder import (DataError, class_folders, make_private_dir, no_class_folders,
                                       node_cache_dir, shared_listing_entry, split_dir, split_listing, trusted_dir)

SHOWN_PATHS = 3  # how many example paths an error message lists per kind of problem

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


def _read_ends(path: str):
    """(size, first 16 bytes, last _TAIL bytes) of a file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe put in place after the listing never blocks
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        size = info.st_size
        head = os.pread(fd, 16, 0)
        tail = os.pread(fd, _TAIL, max(0, size - _TAIL)) if size else b""
    finally:
        os.close(fd)
    return size, head, tail


def _header_problem(path: str) -> Optional[str]:
    """Why a file cannot be an intact image, from its first and last bytes; None if it looks intact."""
    try:
        size, head, tail = _read_ends(path)
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
    special_files: list = field(default_factory=list)  # "class/file: named pipe"
    empty_classes: list = field(default_factory=list)
    unknown_classes: list = field(default_factory=list)
    from_cache: bool = False

    def problems(self) -> list:
        if not self.classes:
            return [no_class_folders(self.path)]
        parts = []
        if not self.images:  # every class folder empty: one clear line instead of a list of empty folders
            parts.append(f"{self.path}/ has no images in its {self.classes} class folders")
        empty_classes = self.empty_classes if self.images else []
        for items, one, many in ((self.unreadable, "unreadable image", "unreadable images"),
                                 (self.special_files, "entry that is not a regular file",
                                  "entries that are not regular files"),
                                 (self.non_images, "non-image file", "non-image files"),
                                 (empty_classes, "empty class folder", "empty class folders"),
                                 (self.unknown_classes, "class folder not in the train split",
                                  "class folders not in the train split")):
            if items:
                shown = ", ".join(items[:SHOWN_PATHS]) + (", ..." if len(items) > SHOWN_PATHS else "")
                parts.append(f"{len(items)} {one if len(items) == 1 else many} in {self.path} (first: {shown})")
        return parts


NODE_CACHE = "<node>"  # check_image_folder's default cache_dir: node_cache_dir() (folder.py, shared with listings)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_image_folder(data_dir: str, splits: Iterable[str] = ("train", "val"), deep: bool = True,
                       cache_dir: Optional[str] = NODE_CACHE, workers: Optional[int] = None) -> list:
    """Check the splits of an ImageFolder before training; return a `SplitReport` per split, or raise `DataError`
    (one line) describing every problem found. The first split is the one whose classes define the labels.
    cache_dir=None checks every time; workers defaults to this process's cores."""
    splits = list(splits)
    if cache_dir == NODE_CACHE:
        cache_dir = node_cache_dir()
        make_private_dir(cache_dir)
        cache_dir = cache_dir if trusted_dir(cache_dir) else None
    workers = workers or available_cores()
    reports = []
    train_classes = None
    for split in splits:
        root = split_dir(data_dir, split)  # a missing split stops here, before any file is read
        reports.append(_check_split(split, root, train_classes, deep, cache_dir, workers))
        if train_classes is None:
            train_classes = set(class_folders(root))
    problems = [p for r in reports for p in r.problems()]
    if problems:
        raise DataError("data: " + "; ".join(problems))
    if deep:
        _note_checked(reports)
    return reports


def _list_split(report: SplitReport, root: str, train_classes) -> list:
    """Fill the report's folder-level findings from the node's listing of the split (folder.split_listing: one
    scan per node while the folders do not change); return the split's image paths relative to `root`."""
    listing = split_listing(root)
    report.classes = len(listing.classes)
    report.special_files = list(listing.specials)
    report.non_images = list(listing.others)
    report.unknown_classes = [n for n in listing.classes if train_classes is not None and n not in train_classes]
    report.empty_classes = [n for n, count in zip(listing.classes, listing.counts) if not count]
    images = [os.fsdecode(path) for path in listing.paths.tolist()]
    report.images = len(images)
    return images


def _check_split(split: str, root: str, train_classes, deep: bool, cache_dir: Optional[str],
                 workers: int) -> SplitReport:
    report = SplitReport(split, root)
    images = _list_split(report, root, train_classes)
    if not report.classes:
        return report
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # file reads and Pillow's decoding release the GIL
        fingerprint = _fingerprint(root, images, deep, pool)
        if _cache_hit(cache_dir, root, fingerprint):
            report.from_cache = True
            return report
        results = pool.map(lambda rel: _image_problem(os.path.join(root, rel), deep), images, chunksize=256)
        report.unreadable = [f"{rel}: {problem}" for rel, problem in zip(images, results) if problem]
    if not report.problems():
        _cache_store(cache_dir, root, fingerprint)
    return report


_checked_here: dict = {}  # split path -> digest of the listing this process checked without a problem


def _note_checked(reports: list) -> None:
    for report in reports:
        listing = split_listing(report.path)
        _checked_here[listing.root] = listing.digest


def _file_state(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError as err:
        return f"error {err.errno}"  # an unreadable file is found by the check itself
    return f"{info.st_size} {info.st_mtime_ns}"


def _fingerprint(root: str, images: list, deep: bool, pool: ThreadPoolExecutor) -> str:
    """The state of a split's images: names, sizes and modification times; a change to any of them re-checks."""
    digest = hashlib.sha256(f"{os.path.abspath(root)}\0{deep}\0".encode())
    states = pool.map(lambda rel: _file_state(os.path.join(root, rel)), images, chunksize=256)
    for rel, state in zip(images, states):
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0" + state.encode() + b"\0")
    return digest.hexdigest()


def _cache_file(cache_dir: str, root: str) -> str:
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f".incv4-data-check-{key}.json")


def _cache_hit(cache_dir: Optional[str], root: str, fingerprint: str) -> bool:
    if not cache_dir:
        return False
    try:
        with open(_cache_file(cache_dir, root), encoding="utf-8") as fh:
            return json.load(fh).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


def _cache_store(cache_dir: Optional[str], root: str, fingerprint: str) -> None:
    """Best effort: a read-only or missing cache folder only costs the next run a re-check."""
    if not cache_dir or not os.path.isdir(cache_dir):
        return
    target = _cache_file(cache_dir, root)
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", dir=cache_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"split_dir": os.path.abspath(root), "fingerprint": fingerprint}, fh)
        os.replace(tmp, target)
    except OSError:
        pass


def _names(items: list) -> str:
    return ", ".join(items[:SHOWN_PATHS]) + (f", ... ({len(items)} in all)" if len(items) > SHOWN_PATHS else "")


def check_class_folders(data_dir: str, splits: Iterable[str], train_split: str, num_classes: int) -> None:
    """Refuse class folders that would make labels wrong, in one line naming the difference.

    Labels are the train split's sorted class folders (`folder.list_image_folder`), so train may hold at most
    num_classes classes (a label >= num_classes would be counted as a wrong class), and every other split may only
    have train's class folders (its other images would be dropped). A val split lacking some of train's classes
    keeps the right labels and is accepted (a subset to validate on). Without a train split on disk (validate needs only val, as MindCV's validate.py),
    the val folders themselves give the labels, so they must be exactly num_classes: a val folder lacking a class
    would shift every label after it."""
    train_dir = os.path.join(data_dir, train_split)
    train = class_folders(train_dir) if os.path.isdir(train_dir) else []
    if train_split in splits and not train:
        raise DataError(no_class_folders(train_dir))
    if len(train) > num_classes:
        raise DataError(f"data: {train_dir}/ has {len(train)} classes but num_classes is {num_classes}")
    for split in splits:
        if split == train_split:
            continue
        root = split_dir(data_dir, split)
        found = class_folders(root)
        if not found:
            raise DataError(no_class_folders(root))
        if not train:
            if len(found) != num_classes:
                raise DataError(f"data: {root}/ has {len(found)} classes but num_classes is {num_classes} (with no "
                                f"{train_split}/ split to take the classes from, {split}/ must hold all of them)")
            continue
        extra = sorted(set(found) - set(train))
        if extra:
            raise DataError(f"data: {root}/ has classes not in {train_dir}/: {_names(extra)}")


def check_run_data(recipe, splits: Optional[Iterable[str]] = None) -> None:
    """Everything checked about a run's data before anything starts (the CLI, the launcher and each worker call
    this one function): the data dir and its splits exist, the class folders agree with each other and with
    num_classes, every image decodes. `splits`: the training split, plus val when the recipe evaluates while
    training, unless given. Raises RecipeError (DataError is one) with one line. A worker whose launcher checked
    the same folders (LISTINGS_ENV, unchanged since) checks only the folders, not every image again."""
    from incv4.trainer.recipe import RecipeError, require_data_dir

    splits = _run_splits(recipe, splits)
    require_data_dir(recipe, splits)
    if all(_checked_by_launcher(os.path.join(recipe.data_dir, split)) for split in splits):
        return  # this node's launcher checked these very folders before starting this worker
    try:
        check_image_folder(recipe.data_dir, splits)
    except RecipeError:
        raise
    except ValueError as err:  # any other bad-data ValueError is still a one-line usage error
        raise RecipeError(str(err)) from None


def _run_splits(recipe, splits: Optional[Iterable[str]]) -> list:
    if splits is None:
        return [recipe.train_split] + ([recipe.val_split] if recipe.val_while_train else [])
    return list(splits)


def _checked_by_launcher(split_path: str) -> bool:
    entry = shared_listing_entry(os.path.abspath(split_path))
    if not entry or not entry["checked"]:
        return False
    return split_listing(split_path).digest == entry["digest"]  # still the folders' state the launcher checked


def shared_listings_env(recipe, splits: Optional[Iterable[str]] = None) -> Optional[str]:
    """The LISTINGS_ENV value for the workers this process starts: where this node's listings of the run's
    splits are, their digests, and whether this process checked their images. The listings are made (or found
    fresh) here, so the workers read one file instead of each scanning the tree. None when this node has no
    private cache folder (each worker then scans, as it would alone)."""
    cache_dir = node_cache_dir()
    make_private_dir(cache_dir)
    if not trusted_dir(cache_dir):
        return None
    entries = {}
    for split in _run_splits(recipe, splits):
        try:
            listing = split_listing(os.path.join(recipe.data_dir, split), cache_dir)
        except OSError:  # the folders changed under us: each worker lists and checks them, and says what is wrong
            continue
        entries[listing.root] = {"digest": listing.digest, "checked": _checked_here.get(listing.root) == listing.digest}
    return json.dumps({"dir": cache_dir, "splits": entries})
