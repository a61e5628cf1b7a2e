"""Listing and checking an ImageFolder before training (trainer/data/folder.py, trainer/data/check.py): one-line
errors with counts and paths, the check cache, and neither module needing MindSpore."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from incv4.trainer.data import check
from incv4.trainer.data.check import check_image_folder
from incv4.trainer.data.folder import DataError, list_image_folder
from incv4.trainer.recipe import RecipeError


def test_listing_and_check_import_without_mindspore():
    code = ("import sys, incv4.trainer.data.folder, incv4.trainer.data.check, incv4.trainer.data.pipeline; "
            "assert 'mindspore' not in sys.modules, 'mindspore imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_listing_labels_follow_the_given_classes_and_skip_hidden_entries(tmp_path, write_ids):
    write_ids(tmp_path, "val", 6, classes=2)
    (tmp_path / "val" / ".cache").mkdir()
    (tmp_path / "val" / "class1" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "val" / "loose.png").write_bytes(b"")  # directly in the split folder: ignored
    folder = list_image_folder(str(tmp_path), "val", classes=["class9", "class1", "class0"])
    assert folder.classes == ["class9", "class1", "class0"]
    assert [os.fsdecode(p) for p in folder.paths] == [
        "class1/img0001.png", "class1/img0003.png", "class1/img0005.png",
        "class0/img0000.png", "class0/img0002.png", "class0/img0004.png"]
    np.testing.assert_array_equal(folder.labels, [1, 1, 1, 2, 2, 2])
    assert folder.path(0) == str(tmp_path / "val" / "class1" / "img0001.png")


def test_check_reports_truncated_non_image_and_empty_class_with_paths(broken_dataset):
    with pytest.raises(DataError) as caught:
        check_image_folder(str(broken_dataset), ["train", "val"])
    message = str(caught.value)
    train = broken_dataset / "train"
    assert "\n" not in message
    assert message.startswith("data: 1 unreadable image in ")
    assert f"1 unreadable image in {train} (first: class1/cut.JPEG: truncated)" in message
    assert f"2 non-image files in {train} (first: class0/nested/, class2/notes.txt)" in message
    assert f"1 empty class folder in {train} (first: class9)" in message
    assert "DS_Store" not in message and "ipynb" not in message


def test_check_passes_a_clean_dataset_and_counts_it(broken_dataset):
    (broken_dataset / "train" / "class1" / "cut.JPEG").unlink()
    (broken_dataset / "train" / "class2" / "notes.txt").unlink()
    (broken_dataset / "train" / "class9").rmdir()
    (broken_dataset / "train" / "class0" / "nested").rmdir()
    train, val = check_image_folder(str(broken_dataset), ["train", "val"], deep=True)
    assert (train.images, train.classes, val.images, val.classes) == (12, 3, 6, 3)


def test_check_finds_images_that_only_look_like_images(tmp_path, write_ids):
    write_ids(tmp_path, "train", 4, classes=2, fmt="JPEG")
    (tmp_path / "train" / "class0" / "text.JPEG").write_text("<html>not found</html>")
    (tmp_path / "train" / "class1" / "zero.jpg").write_bytes(b"")
    png = tmp_path / "train" / "class1" / "cut.png"
    Image.new("RGB", (50, 50), (1, 2, 3)).save(png)
    png.write_bytes(png.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"^data: 3 unreadable images in .*class0/text.JPEG: not an image, "
                                        r"class1/cut.png: truncated, class1/zero.jpg: empty file\)$"):
        check_image_folder(str(tmp_path), ["train"])


def test_gif_or_webp_named_jpeg_is_reported_as_unsupported(tmp_path, write_ids):
    write_ids(tmp_path, "train", 2, classes=1, fmt="JPEG")
    Image.new("RGB", (20, 20)).save(tmp_path / "train" / "class0" / "anim.JPEG", "GIF")
    with pytest.raises(DataError, match=r"class0/anim.JPEG: GIF is not supported \(use JPEG, PNG, BMP or TIFF\)"):
        check_image_folder(str(tmp_path), ["train"])


def test_jpeg_with_trailing_bytes_after_the_end_marker_is_accepted(tmp_path, write_ids):
    write_ids(tmp_path, "train", 2, classes=1, fmt="JPEG")
    path = tmp_path / "train" / "class0" / "img0000.jpeg"
    path.write_bytes(path.read_bytes() + b"\0" * 4096)
    (report,) = check_image_folder(str(tmp_path), ["train"])
    assert report.images == 2


def test_missing_split_and_missing_data_dir_are_one_line(tmp_path, write_ids):
    write_ids(tmp_path, "train", 4, classes=2)
    with pytest.raises(DataError, match=rf"^data: split 'val' not found: no folder {tmp_path}/val$"):
        check_image_folder(str(tmp_path), ["train", "val"])
    with pytest.raises(DataError, match=r"^data: directory '.*nowhere' does not exist$"):
        check_image_folder(str(tmp_path / "nowhere"), ["train"])
    with pytest.raises(DataError, match=r"split 'val' not found"):
        list_image_folder(str(tmp_path), "val")


def test_val_class_unknown_to_train_is_reported(tmp_path, write_ids):
    write_ids(tmp_path, "train", 4, classes=2)
    write_ids(tmp_path, "val", 6, classes=3)
    with pytest.raises(DataError, match=r"1 class folder not in the train split in .*val \(first: class2\)"):
        check_image_folder(str(tmp_path), ["train", "val"])


def test_check_result_is_cached_until_the_file_list_changes(tmp_path, monkeypatch, write_ids):
    write_ids(tmp_path / "d", "train", 6, classes=2, fmt="JPEG")
    cache = tmp_path / "ckpt"
    cache.mkdir()
    (first,) = check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert not first.from_cache and len(os.listdir(cache)) == 1

    reads = []
    original = check._image_problem
    monkeypatch.setattr(check, "_image_problem", lambda path, deep: reads.append(path) or original(path, deep))
    (second,) = check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert second.from_cache and reads == []

    bad = tmp_path / "d" / "train" / "class0" / "new.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    with pytest.raises(DataError, match="new.JPEG: truncated"):
        check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert len(reads) == 7


def test_data_error_is_a_one_line_cli_error():
    """The CLI prints RecipeError subclasses as one line with exit 2: DataError is one."""
    assert issubclass(DataError, RecipeError)


def test_incv4_train_stops_on_bad_data_with_one_line_and_exit_2(broken_dataset, repo_root):
    """Through the real command: the trainer checks the data before any work starts."""
    incv4 = os.path.join(os.path.dirname(sys.executable), "incv4")
    result = subprocess.run([incv4, "train", "--config", str(repo_root / "configs" / "inception_v4_cpu_demo.yaml"),
                             "--data-dir", str(broken_dataset), "--workers", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: data: 1 unreadable image in ")
    assert "class1/cut.JPEG: truncated" in lines[0] and "class2/notes.txt" in lines[0] and "(first: class9)" in lines[0]
