"""Listing an ImageNet-style ImageFolder split: `<data_dir>/<split>/<class>/<image>`.

Images are JPEG, PNG, BMP or TIFF files directly inside a class folder. Class folders sorted by name give the label
indices, as in MindCV's ImageFolderDataset; the val split uses the train split's class list, so a val folder that
lacks a class never shifts the labels. Hidden files and folders (".DS_Store", ".ipynb_checkpoints") and files lying
directly in a split folder are ignored. Entries that are neither folders nor regular files (a named pipe,
a socket, a broken link) are listed apart and never opened.

`DataError` is the one-line error every data problem raises. This module does not import MindSpore, so the CLI
can list and check data before any MindSpore work.

A split is scanned once per node: `split_listing` keeps the scan in this node's cache folder (`node_cache_dir()`),
keyed by the state (inode, size, modification and change times) of the split folder and of each class folder. Adding,
removing or renaming an entry changes its folder's modification time, so a restart stats one folder per class
instead of listing every file, and a changed folder is scanned again. A scan whose folders changed less than
`RACY_SECONDS` before it started is not reused by later runs (a coarse timestamp could hide a change made in the
same tick), except by the workers of the launcher that made it: the launcher names its listings in
`LISTINGS_ENV`, so all of a node's workers read one file instead of each scanning the tree.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from incv4.trainer.recipe import RecipeError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")


class DataError(RecipeError):
    """A data problem found before training, in one line with the count and the first few paths."""


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


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(split_dir: str) -> list:
    """Sorted class folder names of a split (hidden folders ignored)."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not is_hidden(e.name))


def _special_kind(entry: os.DirEntry) -> str:
    """What a class-folder entry that is neither a folder nor a regular file is (it is never opened)."""
    try:
        mode = entry.stat().st_mode
    except OSError:
        return "broken link"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def scan_class(class_dir: str):
    """(image files, other entries, special entries) directly inside a class folder, sorted, hidden entries skipped.
    Like MindSpore's ImageFolderDataset (and so MindCV), images in nested folders are not read: a nested folder is
    an "other". Special entries ("name: named pipe") are never images whatever their name: opening a named pipe
    would wait forever."""
    images, others, specials = [], [], []
    with os.scandir(class_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if is_hidden(entry.name):
                continue
            if entry.is_dir():
                others.append(entry.name + "/")
            elif not entry.is_file():
                specials.append(f"{entry.name}: {_special_kind(entry)}")
            else:
                (images if is_image_name(entry.name) else others).append(entry.name)
    return images, others, specials


def no_class_folders(root: str) -> str:
    return f"data: {root}/ has no class folders (expected {root}/<class>/<image>)"


def split_dir(data_dir: str, split: str) -> str:
    """The split's folder, or a DataError naming what is missing."""
    if not os.path.isdir(data_dir):
        raise DataError(f"data: directory '{data_dir}' does not exist")
    path = os.path.join(data_dir, split)
    if not os.path.isdir(path):
        raise DataError(f"data: split '{split}' not found: no folder {path}")
    return path


def list_image_folder(data_dir: str, split: str, classes: Optional[Sequence[str]] = None) -> ImageFolder:
    """List a split's images and labels. `classes` (the train split's, for val) fixes the label of each folder;
    folders not in it are refused by `check_image_folder` and ignored here."""
    root = split_dir(data_dir, split)
    listing = split_listing(root)
    classes = list(listing.classes if classes is None else classes)
    if not classes:
        raise DataError(no_class_folders(root))
    if not len(listing.paths):
        raise DataError(f"data: {root}/ has no images")
    if classes == listing.classes:  # the usual case: no copy of a listing that may hold a million paths
        labels = np.repeat(np.arange(len(classes), dtype=np.int32), listing.counts)
        return ImageFolder(root, classes, listing.paths, labels)
    ends = np.cumsum(listing.counts)
    where = {name: (int(end - count), int(end)) for name, count, end in zip(listing.classes, listing.counts, ends)}
    picked = [(label, where[name]) for label, name in enumerate(classes) if name in where]  # in label order
    paths = [listing.paths[start:end] for _, (start, end) in picked]
    labels = [np.full(end - start, label, dtype=np.int32) for label, (start, end) in picked]
    if not sum(len(p) for p in paths):
        raise DataError(f"data: {root}/ has no images")
    return ImageFolder(root, classes, np.concatenate(paths), np.concatenate(labels))


# ---- the node's listing of a split, shared by its processes ----

LISTINGS_ENV = "INCV4_DATA_LISTINGS"  # set by the launcher: {"dir": ..., "splits": {split path: {digest, checked}}}
RACY_SECONDS = 2.0  # a folder changed this close to a scan may hide a change in the same timestamp tick
_LISTING_VERSION = 1


@dataclass
class SplitListing:
    """One scan of a split: `paths` ("class/file" bytes, class by class in sorted order), `counts` images per
    class, the class folders' other entries and special entries, and `digest`, the folders' state it describes."""

    root: str
    classes: list
    counts: np.ndarray  # int64, one per class
    paths: np.ndarray  # bytes
    others: list  # "class/name" (non-images, nested folders)
    specials: list  # "class/name: named pipe"
    digest: str
    racy: bool = False

    def fresh(self) -> bool:
        """Whether the split and class folders are still in the state this scan describes (~1 stat per class)."""
        try:
            return _folders_digest(self.root, self.classes) == self.digest
        except OSError:  # a class folder went away
            return False


def node_cache_dir() -> str:
    """This node's (and this user's) folder for data listings and check results: the temporary folder is local to
    a node or pod."""
    return os.path.join(tempfile.gettempdir(), f"incv4-data-check-{os.getuid()}")


def make_private_dir(path: str) -> None:
    """Best effort: without the folder the scan and the check just run every time."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        pass


def trusted_dir(path: str) -> bool:
    """Only a folder this user owns and nobody else can write may vouch for data: in the shared temporary folder,
    another user could have planted a result."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _folder_state(path: str) -> str:
    info = os.stat(path)
    return f"{info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}"


def _digest(root: str, root_state: str, classes: Sequence[str], states: Sequence[str]) -> str:
    digest = hashlib.sha256(os.fsencode(f"{_LISTING_VERSION}\0{root}\0{root_state}\0"))
    for name, state in zip(classes, states):
        digest.update(os.fsencode(name) + b"\0" + state.encode() + b"\0")
    return digest.hexdigest()


def _folders_digest(root: str, classes: Sequence[str]) -> str:
    return _digest(root, _folder_state(root), classes, [_folder_state(os.path.join(root, n)) for n in classes])


def scan_split(root: str) -> SplitListing:
    """List every class folder of a split (no cache). Each folder's state is read before its entries, so a change
    made during the scan makes the listing stale, never silently incomplete."""
    root = os.path.abspath(root)
    started_ns = time.time_ns()
    newest_ns = os.stat(root).st_mtime_ns
    root_state = _folder_state(root)
    classes = class_folders(root)
    states, counts, paths, others, specials = [], [], [], [], []
    for name in classes:
        folder = os.path.join(root, name)
        states.append(_folder_state(folder))
        newest_ns = max(newest_ns, os.stat(folder).st_mtime_ns)
        images, other, special = scan_class(folder)
        counts.append(len(images))
        prefix = os.fsencode(name) + b"/"
        paths.extend(prefix + os.fsencode(image) for image in images)
        others.extend(f"{name}/{entry}" for entry in other)
        specials.extend(f"{name}/{entry}" for entry in special)
    racy = newest_ns >= started_ns - int(RACY_SECONDS * 1e9)
    return SplitListing(root, classes, np.array(counts, dtype=np.int64), np.array(paths, dtype=bytes), others,
                        specials, _digest(root, root_state, classes, states), racy)


def _listing_file(cache_dir: str, root: str) -> str:
    key = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return os.path.join(cache_dir, f".incv4-listing-{key}.npz")


def store_listing(cache_dir: str, listing: SplitListing) -> bool:
    """Write the listing atomically (temporary file, then rename); best effort: False when it could not."""
    target = _listing_file(cache_dir, listing.root)
    meta = {"version": _LISTING_VERSION, "root": listing.root, "digest": listing.digest, "racy": listing.racy}
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", dir=cache_dir)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), paths=listing.paths, counts=listing.counts,
                     classes=_bytes_array(listing.classes), others=_bytes_array(listing.others),
                     specials=_bytes_array(listing.specials))
        os.replace(tmp, target)
        return True
    except OSError:
        if tmp:
            _remove_quietly(tmp)
        return False


def _bytes_array(names: Sequence[str]) -> np.ndarray:
    return np.array([os.fsencode(n) for n in names], dtype=bytes)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def load_listing(cache_dir: str, root: str) -> Optional[SplitListing]:
    """The stored listing of `root`, or None when there is none or it is unreadable or inconsistent (a damaged
    cache is just scanned again). Whether it is still fresh is the caller's question."""
    try:
        with np.load(_listing_file(cache_dir, root), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            listing = SplitListing(root, _names(data["classes"]), data["counts"].astype(np.int64), data["paths"],
                                   _names(data["others"]), _names(data["specials"]), str(meta["digest"]),
                                   bool(meta["racy"]))
            same_run = meta.get("version") == _LISTING_VERSION and meta.get("root") == root
    except Exception:  # OSError, a bad zip, a missing key, a wrong type: all mean "scan again"
        return None
    consistent = (len(listing.counts) == len(listing.classes) and listing.paths.dtype.kind == "S"
                  and int(listing.counts.sum()) == len(listing.paths) and (listing.counts >= 0).all())
    return listing if same_run and consistent else None


def _names(array: np.ndarray) -> list:
    return [os.fsdecode(bytes(item)) for item in array.tolist()]


def shared_listing_entry(root: str) -> Optional[dict]:
    """What the launcher said about this split in LISTINGS_ENV: {"dir", "digest", "checked"}, or None."""
    try:
        shared = json.loads(os.environ.get(LISTINGS_ENV) or "{}")
        entry = shared["splits"][root]
        return {"dir": str(shared["dir"]), "digest": str(entry["digest"]), "checked": entry.get("checked") is True}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


_in_process: dict = {}  # root -> the SplitListing this process last used


def split_listing(root: str, cache_dir: Optional[str] = None) -> SplitListing:
    """The split's listing: this process's last one, the launcher's, or this node's cached one while fresh, else a
    new scan (stored for the next process). `cache_dir`: where listings live (default: the launcher's folder,
    else `node_cache_dir()`); a folder that is not this user's own and private is never read."""
    root = os.path.abspath(root)
    known = _in_process.get(root)
    if known is not None and known.fresh():
        return known
    shared = shared_listing_entry(root)
    if cache_dir is None:
        cache_dir = shared["dir"] if shared else node_cache_dir()
        if not shared:
            make_private_dir(cache_dir)
    cache_dir = cache_dir if trusted_dir(cache_dir) else None
    listing = load_listing(cache_dir, root) if cache_dir else None
    # a racy listing is reused only by the workers of the launcher that made it (it names its digest)
    made_by_launcher = listing is not None and shared is not None and shared["digest"] == listing.digest
    if listing is None or not listing.fresh() or (listing.racy and not made_by_launcher):
        listing = scan_split(root)
        if cache_dir:
            store_listing(cache_dir, listing)
    _in_process[root] = listing
    return listing
