"""Helper (no tests here): image folders of random-noise JPEGs, and issue 19's damaged JPEG."""
from __future__ import annotations

import os

from PIL import Image


def noise_jpegs(root, split, classes=10, per_class=2, size=48) -> str:
    """`root/<split>/c<k>/<i>.JPEG`: `classes` classes of `per_class` random-noise JPEGs, `size` pixels square."""
    for c in range(classes):
        os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
        for i in range(per_class):
            noise = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
            noise.save(os.path.join(root, split, f"c{c}", f"{i}.JPEG"), "JPEG")
    return str(root)


def damage_jpeg(path) -> None:
    """Issue 19's case: the JPEG's first 300 bytes, then the end-of-image marker (MindSpore's decoder: SIGFPE)."""
    with open(path, "rb") as fh:
        head = fh.read(300)
    with open(path, "wb") as fh:
        fh.write(head + b"\xff\xd9")
