"""A small, learnable synthetic ImageFolder (JPEG) so everything runs without ImageNet: `incv4 demo-data OUT_DIR`.

Each class is a hue (ten hues 36 degrees apart) painted as a noisy background, plus a class-specific shape drawn in
the opposite hue at a random place and size. Colour and shape both identify the class, and both survive the
training transforms (random-resized crop, flips, brightness/contrast/saturation jitter, which never moves hue), so
InceptionV4 at 75px tells the classes apart within a few dozen steps.

The output is deterministic for a seed (every image has its own random stream derived from seed, split, class and
index) and is written atomically: images go to a temporary sibling folder that is renamed into place at the end,
so an interrupted run leaves nothing half-written. A marker file records the parameters; an existing demo dataset
is replaced (or kept as is when its parameters match), anything else that is not empty is refused.
"""
from __future__ import annotations

import colorsys
import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from incv4.trainer.data.folder import DataError

MARKER = "incv4-demo-dataset.json"
GENERATOR = "incv4 demo-data v1"
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "bar", "plus", "hourglass", "dots")
JPEG_QUALITY = 90


def class_names(num_classes: int) -> list[str]:
    """Folder names whose sorted order is the label order (`00-circle`, `01-square`, ...)."""
    return [f"{i:02d}-{SHAPES[i % len(SHAPES)]}" for i in range(num_classes)]


def write_demo_dataset(out_dir: str, num_classes: int = 10, train_per_class: int = 64, val_per_class: int = 16,
                       image_size: int = 96, seed: int = 0) -> dict[str, Any]:
    """Write `<out_dir>/train/<class>/*.JPEG` and `<out_dir>/val/<class>/*.JPEG`; return a summary mapping."""
    _check_args(num_classes, train_per_class, val_per_class, image_size, seed)
    params = {"generator": GENERATOR, "num_classes": num_classes, "train_per_class": train_per_class,
              "val_per_class": val_per_class, "image_size": image_size, "seed": seed}
    out_dir = os.path.abspath(out_dir)
    previous = _previous_demo_params(out_dir)
    if previous == params:
        return _summary(out_dir, params, reused=True)

    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    except OSError as err:
        raise DataError(f"demo-data: cannot write under '{parent}' ({err.strerror})") from None
    try:
        names = class_names(num_classes)
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            for label, name in enumerate(names):
                folder = os.path.join(tmp, split, name)
                os.makedirs(folder)
                for index in range(per_class):
                    rng = np.random.default_rng([seed, 0 if split == "train" else 1, label, index])
                    image = draw_example(label, num_classes, image_size, rng)
                    image.save(os.path.join(folder, f"{split}_{index:05d}.JPEG"), "JPEG", quality=JPEG_QUALITY)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as fh:
            json.dump(params, fh, indent=1, sort_keys=True)
        _move_into_place(tmp, out_dir, replace_existing=previous is not None)
    except BaseException:  # an error, or SIGINT/SIGTERM turned into an exception by the CLI: leave nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(tmp + ".old", ignore_errors=True)  # the replaced dataset, once the new one is in place
        raise
    return _summary(out_dir, params, reused=False)


def draw_example(label: int, num_classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class `label`: noisy background in the class hue, the class shape in the opposite hue."""
    hue = (label % 10) / 10.0 + (label // 10) * 0.037  # beyond ten classes, shift the hue ring a little
    background = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95))) * 255
    pixels = background + rng.normal(0.0, 18.0, size=(size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    shape_colour = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, rng.uniform(0.6, 1.0)))
    extent = int(size * rng.uniform(0.35, 0.6))
    left = int(rng.integers(0, size - extent + 1))
    top = int(rng.integers(0, size - extent + 1))
    _draw_shape(ImageDraw.Draw(image), SHAPES[label % len(SHAPES)], left, top, extent, shape_colour)
    return image


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, s: int, colour: tuple) -> None:
    x1, y1, mid_x, mid_y, t = x + s, y + s, x + s // 2, y + s // 2, max(2, s // 5)
    if shape == "circle":
        draw.ellipse([x, y, x1, y1], fill=colour)
    elif shape == "square":
        draw.rectangle([x, y, x1, y1], fill=colour)
    elif shape == "triangle":
        draw.polygon([(mid_x, y), (x1, y1), (x, y1)], fill=colour)
    elif shape == "cross":
        draw.line([(x, y), (x1, y1)], fill=colour, width=t)
        draw.line([(x, y1), (x1, y)], fill=colour, width=t)
    elif shape == "ring":
        draw.ellipse([x, y, x1, y1], outline=colour, width=t)
    elif shape == "diamond":
        draw.polygon([(mid_x, y), (x1, mid_y), (mid_x, y1), (x, mid_y)], fill=colour)
    elif shape == "bar":
        draw.rectangle([x, mid_y - t, x1, mid_y + t], fill=colour)
    elif shape == "plus":
        draw.rectangle([x, mid_y - t // 2, x1, mid_y + t // 2], fill=colour)
        draw.rectangle([mid_x - t // 2, y, mid_x + t // 2, y1], fill=colour)
    elif shape == "hourglass":
        draw.polygon([(x, y), (x1, y), (x, y1), (x1, y1)], fill=colour)
    else:  # dots
        r = max(2, s // 8)
        for cx, cy in ((x + r, y + r), (x1 - r, y + r), (mid_x, mid_y), (x + r, y1 - r), (x1 - r, y1 - r)):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _check_args(num_classes, train_per_class, val_per_class, image_size, seed) -> None:
    for name, value, low in (("num_classes", num_classes, 2), ("train_per_class", train_per_class, 1),
                             ("val_per_class", val_per_class, 1), ("image_size", image_size, 32), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise DataError(f"demo-data: {name} must be an integer >= {low}, got {value!r}")


def _previous_demo_params(out_dir: str):
    """The parameters of a demo dataset already at out_dir, None if out_dir is absent or empty; refuses anything
    else that is not empty, so a user's real data is never overwritten."""
    if not os.path.exists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise DataError(f"demo-data: '{out_dir}' exists and is not a directory")
    if not os.listdir(out_dir):
        return None
    try:
        with open(os.path.join(out_dir, MARKER), encoding="utf-8") as fh:
            params = json.load(fh)
        if isinstance(params, dict) and params.get("generator", "").startswith("incv4 demo-data"):
            return params
    except (OSError, ValueError):
        pass
    raise DataError(f"demo-data: '{out_dir}' is not empty and is not an incv4 demo dataset; "
                    f"refusing to overwrite it (choose another OUT_DIR)")


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM for a few renames, so an interruption never lands between them (out_dir would be gone
    and the previous dataset stranded); a held signal is raised again when the block ends. Python runs signal
    handlers in the main thread whichever thread the kernel picked, so deferring them there holds them for the
    whole process (a thread mask would not); outside the main thread nothing can be held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


def _move_into_place(tmp: str, out_dir: str, replace_existing: bool) -> None:
    old = tmp + ".old"
    with _signals_held():
        if os.path.isdir(out_dir) and not replace_existing:
            os.rmdir(out_dir)  # empty (checked above)
        if replace_existing:
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _summary(out_dir: str, params: dict, reused: bool) -> dict[str, Any]:
    n = params["num_classes"]
    return {"out_dir": out_dir, "classes": class_names(n), "num_classes": n,
            "train_images": n * params["train_per_class"], "val_images": n * params["val_per_class"],
            "image_size": params["image_size"], "seed": params["seed"], "reused": reused}
