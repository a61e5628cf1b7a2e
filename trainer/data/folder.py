"""Listing an ImageNet-style ImageFolder split: `<data_dir>/<split>/<class>/<image>`.

Images are JPEG, PNG, BMP or TIFF files directly inside a class folder. Class folders sorted by name give the label
indices, as in MindCV's ImageFolderDataset; the val split uses the train split's class list, so a val folder that
lacks a class never shifts the labels. Hidden files and folders (".DS_Store", ".ipynb_checkpoints") and files lying
directly in a split folder are ignored. Entries that are neither folders nor regular files (a named pipe,
a socket, a broken link) are listed apart and never opened.

`DataError` is the one-line error every data problem raises. This module does not import MindSpore, so the CLI
can list and check data before any MindSpore work.
"""
from __future__ import annotations

import os
import stat
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
    found = class_folders(root)
    classes = list(found if classes is None else classes)
    if not classes:
        raise DataError(no_class_folders(root))
    paths, labels = [], []
    present = set(found)
    for label, name in enumerate(classes):
        if name not in present:
            continue
        images, _, _ = scan_class(os.path.join(root, name))
        paths.extend(os.path.join(name, rel) for rel in images)
        labels.extend([label] * len(images))
    if not paths:
        raise DataError(f"data: {root}/ has no images")
    return ImageFolder(root, classes, np.array([os.fsencode(p) for p in paths]), np.array(labels, dtype=np.int32))
