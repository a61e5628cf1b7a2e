"""The synthetic demo ImageFolder: layout, counts, determinism, atomic writes, refusing to overwrite real data."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from incv4.trainer.data import demo as demo_data
from incv4.trainer.data.check import check_image_folder
from incv4.trainer.data.demo import write_demo_dataset
from incv4.trainer.data.folder import DataError


def _digest(root) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + open(path, "rb").read())
    return digest.hexdigest()


def test_layout_counts_and_image_format(tmp_path):
    out = tmp_path / "demo"
    summary = write_demo_dataset(str(out), num_classes=4, train_per_class=5, val_per_class=2, image_size=48, seed=1)
    assert summary["train_images"] == 20 and summary["val_images"] == 8 and not summary["reused"]
    classes = summary["classes"]
    assert classes == sorted(classes) and len(classes) == 4
    for split, per_class in (("train", 5), ("val", 2)):
        assert sorted(os.listdir(out / split)) == classes
        for name in classes:
            files = sorted(os.listdir(out / split / name))
            assert len(files) == per_class and all(f.endswith(".JPEG") for f in files)
            with Image.open(out / split / name / files[0]) as image:
                assert image.format == "JPEG" and image.size == (48, 48) and image.mode == "RGB"
    train, val = check_image_folder(str(out), ["train", "val"], deep=True)
    assert (train.images, val.images) == (20, 8)
    assert not [p for p in os.listdir(tmp_path) if p != "demo"], "no temporary folder left behind"


def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(num_classes=3, train_per_class=3, val_per_class=1, image_size=40)
    write_demo_dataset(str(tmp_path / "a"), seed=5, **kwargs)
    write_demo_dataset(str(tmp_path / "b"), seed=5, **kwargs)
    write_demo_dataset(str(tmp_path / "c"), seed=6, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_classes_are_separable_by_colour(tmp_path):
    """A cheap learnability check: the nearest class-mean colour classifies held-out images almost always."""
    summary = write_demo_dataset(str(tmp_path / "d"), num_classes=10, train_per_class=12, val_per_class=6,
                                 image_size=48)

    def mean_colours(split):
        rows = []
        for label, name in enumerate(summary["classes"]):
            for f in sorted(os.listdir(tmp_path / "d" / split / name)):
                pixels = np.asarray(Image.open(tmp_path / "d" / split / name / f), dtype=np.float64) / 255
                rows.append((label, pixels.mean(axis=(0, 1)) / max(pixels.mean(), 1e-6)))
        return rows

    train, val = mean_colours("train"), mean_colours("val")
    centroids = np.array([np.mean([c for l, c in train if l == k], axis=0) for k in range(10)])
    hits = [int(np.argmin(((centroids - c) ** 2).sum(axis=1)) == label) for label, c in val]
    assert np.mean(hits) >= 0.9


def test_same_parameters_reuse_and_new_parameters_replace_a_previous_demo(tmp_path):
    out = tmp_path / "demo"
    write_demo_dataset(str(out), num_classes=3, train_per_class=2, val_per_class=1, image_size=40)
    again = write_demo_dataset(str(out), num_classes=3, train_per_class=2, val_per_class=1, image_size=40)
    assert again["reused"]
    replaced = write_demo_dataset(str(out), num_classes=2, train_per_class=3, val_per_class=1, image_size=40)
    assert not replaced["reused"] and sorted(os.listdir(out / "train")) == replaced["classes"]
    assert sum(len(files) for _, _, files in os.walk(out / "train")) == 6
    assert os.listdir(tmp_path) == ["demo"]


def test_refuses_a_non_empty_folder_that_is_not_a_demo_dataset(tmp_path):
    precious = tmp_path / "imagenet" / "train" / "n01440764"
    precious.mkdir(parents=True)
    (precious / "x.JPEG").write_bytes(b"real data")
    with pytest.raises(DataError, match=r"^demo-data: '.*imagenet' is not empty and is not an incv4 demo dataset; "
                                        r"refusing to overwrite it \(choose another OUT_DIR\)$"):
        write_demo_dataset(str(tmp_path / "imagenet"), num_classes=2, train_per_class=1, val_per_class=1)
    assert (precious / "x.JPEG").read_bytes() == b"real data"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="exists and is not a directory"):
        write_demo_dataset(str(tmp_path / "file"))


def test_an_empty_folder_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    summary = write_demo_dataset(str(tmp_path / "empty"), num_classes=2, train_per_class=1, val_per_class=1)
    assert summary["train_images"] == 2 and os.path.isdir(tmp_path / "empty" / "val")


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    drawn = []
    original = demo_data.draw_example

    def draw_then_fail(*args):
        drawn.append(1)
        if len(drawn) == 5:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(demo_data, "draw_example", draw_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_demo_dataset(str(tmp_path / "demo"), num_classes=3, train_per_class=4, val_per_class=1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key, value", [("num_classes", 1), ("train_per_class", 0), ("image_size", 8),
                                        ("seed", -1)])
def test_bad_arguments_are_one_line_errors(tmp_path, key, value):
    with pytest.raises(DataError, match=rf"^demo-data: {key} must be an integer >= \d+, got {value}$"):
        write_demo_dataset(str(tmp_path / "d"), **{key: value})
