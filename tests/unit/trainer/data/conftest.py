"""Image folders and recipes the data tests share."""
from __future__ import annotations

import pytest
from PIL import Image

from incv4.trainer.recipe import load, shipped_path


def _write_ids(root, split, count, classes=5, size=40, fmt="PNG"):
    """`count` flat-colour images whose red/green values encode their id; image i is in class i % classes."""
    for i in range(count):
        folder = root / split / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = ((i * 5) % 256, (i * 5) // 256 * 40, 128)
        Image.new("RGB", (size, size), colour).save(folder / f"img{i:04d}.{fmt.lower()}", fmt)


def _demo_recipe(data_dir, **keys):
    """The CPU demo recipe with every random colour/geometry change off unless a test turns it on."""
    base = dict(data_dir=str(data_dir), hflip=0.0, vflip=0.0, color_jitter=None, auto_augment=None, re_prob=0.0,
                num_parallel_workers=2)
    base.update(keys)
    overrides = [f"{k}={'null' if v is None else v}" for k, v in base.items() if k != "data_dir"]
    return load(shipped_path("inception_v4_cpu_demo.yaml"), overrides=overrides, data_dir=base["data_dir"])


@pytest.fixture
def write_ids():
    """write_ids(root, split, count, classes=5, size=40, fmt="PNG"): flat-colour images whose colour encodes their
    id; image i is in class i % classes."""
    return _write_ids


@pytest.fixture
def demo_recipe():
    """demo_recipe(data_dir, **keys): the CPU demo recipe, random colour/geometry changes off unless set."""
    return _demo_recipe


@pytest.fixture(scope="module")
def id_dataset(tmp_path_factory):
    """train: 50 images, val: 23 images, 5 classes, ids encoded in the colours."""
    root = tmp_path_factory.mktemp("ids")
    _write_ids(root, "train", 50)
    _write_ids(root, "val", 23)
    return root


@pytest.fixture
def broken_dataset(tmp_path):
    """A JPEG ImageFolder with one truncated image, one text file, one empty class, one nested folder, and hidden
    entries that must be ignored."""
    _write_ids(tmp_path, "train", 12, classes=3, fmt="JPEG")
    _write_ids(tmp_path, "val", 6, classes=3, fmt="JPEG")
    good = tmp_path / "train" / "class0" / "img0000.jpeg"
    payload = good.read_bytes()
    (tmp_path / "train" / "class1" / "cut.JPEG").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "train" / "class2" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "class9").mkdir()
    (tmp_path / "train" / "class0" / "nested").mkdir()  # MindSpore (and MindCV) would not read images in it
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden: ignored
    (tmp_path / "train" / "class0" / ".DS_Store").write_bytes(b"\0\1")  # hidden: ignored
    return tmp_path
