"""The node's listing of a split (trainer/data/folder.py): scanned once, reused while the folders are unchanged,
never trusted when stale, shared by the launcher with its workers, and the image check skipped only for folders
the launcher checked."""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import pytest

from incv4.trainer.data import check, folder
from incv4.trainer.data.folder import LISTINGS_ENV, DataError, list_image_folder, split_listing


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A private temporary folder for this test's node cache, no launcher environment, no listing in memory."""
    temp = tmp_path / "node-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv(LISTINGS_ENV, raising=False)
    monkeypatch.setattr(folder, "_in_process", {})
    monkeypatch.setattr(check, "_checked_here", {})
    return temp


@pytest.fixture
def scans(monkeypatch):
    """The split folders each real scan read."""
    seen = []
    real = folder.scan_split

    def counting(root):
        seen.append(root)
        return real(root)

    monkeypatch.setattr(folder, "scan_split", counting)
    return seen


def _age(root, seconds=60.0):
    """Make every folder under `root` look changed `seconds` ago (not racy)."""
    past = time.time() - seconds
    for path, _, _ in os.walk(root):
        os.utime(path, (past, past))


def _new_process():
    folder._in_process.clear()


def test_a_second_process_reuses_the_scan_while_the_folders_are_unchanged(tmp_path, node, scans, write_ids):
    write_ids(tmp_path / "d", "train", 12, classes=3)
    _age(tmp_path / "d")
    first = list_image_folder(str(tmp_path / "d"), "train")
    _new_process()
    again = list_image_folder(str(tmp_path / "d"), "train")
    assert len(scans) == 1
    assert list(again.paths) == list(first.paths) and list(again.labels) == list(first.labels)
    assert [os.fsdecode(p) for p in again.paths[:2]] == ["class0/img0000.png", "class0/img0003.png"]
    assert not [n for n in os.listdir(folder.node_cache_dir()) if ".npz." in n]  # no temporary left behind


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new class"])
def test_a_changed_folder_is_scanned_again(tmp_path, node, scans, write_ids, change):
    write_ids(tmp_path / "d", "train", 12, classes=3)
    _age(tmp_path / "d")
    before = len(list_image_folder(str(tmp_path / "d"), "train"))
    class1 = tmp_path / "d" / "train" / "class1"
    if change == "add":
        (class1 / "extra.png").write_bytes((class1 / "img0001.png").read_bytes())
    elif change == "remove":
        (class1 / "img0001.png").unlink()
    elif change == "rename":
        (class1 / "img0001.png").rename(class1 / "renamed.png")
    else:
        (tmp_path / "d" / "train" / "class3").mkdir()
        (tmp_path / "d" / "train" / "class3" / "x.png").write_bytes((class1 / "img0001.png").read_bytes())
    _new_process()
    listed = list_image_folder(str(tmp_path / "d"), "train")
    assert len(scans) == 2
    names = {os.fsdecode(p) for p in listed.paths}
    assert {"add": before + 1, "remove": before - 1, "rename": before, "new class": before + 1}[change] == len(listed)
    assert ("class1/renamed.png" in names) == (change == "rename")
    assert ("class1/img0001.png" in names) == (change in ("add", "new class"))


def test_a_scan_of_just_changed_folders_is_not_reused_by_another_run(tmp_path, node, scans, write_ids):
    """A folder changed within RACY_SECONDS of the scan could hide a change made in the same timestamp tick."""
    write_ids(tmp_path / "d", "train", 6, classes=2)  # just written: racy
    listing = split_listing(str(tmp_path / "d" / "train"))
    assert listing.racy
    _new_process()
    split_listing(str(tmp_path / "d" / "train"))
    assert len(scans) == 2


def test_the_launchers_workers_read_its_listing_even_when_just_made(tmp_path, node, scans, write_ids, demo_recipe,
                                                                     monkeypatch):
    write_ids(tmp_path / "d", "train", 10, classes=2)
    recipe = demo_recipe(tmp_path / "d", val_while_train=False)
    check.check_run_data(recipe)  # what the launcher does before it starts anything
    monkeypatch.setenv(LISTINGS_ENV, check.shared_listings_env(recipe))
    assert len(scans) == 1
    for _ in range(8):  # a node's workers: none scans, none decodes an image again
        _new_process()
        monkeypatch.setattr(check, "_check_split", pytest.fail)
        check.check_run_data(recipe)
        assert len(list_image_folder(str(tmp_path / "d"), "train")) == 10
    assert len(scans) == 1
    shared = json.loads(os.environ[LISTINGS_ENV])
    assert shared["dir"] == folder.node_cache_dir()
    assert list(shared["splits"].values())[0]["checked"] is True


def test_a_worker_checks_again_when_the_folders_changed_after_the_launcher(tmp_path, node, write_ids, demo_recipe,
                                                                          monkeypatch):
    write_ids(tmp_path / "d", "train", 10, classes=2, fmt="JPEG")
    recipe = demo_recipe(tmp_path / "d", val_while_train=False)
    check.check_run_data(recipe)
    monkeypatch.setenv(LISTINGS_ENV, check.shared_listings_env(recipe))
    good = tmp_path / "d" / "train" / "class0" / "img0000.jpeg"
    (good.parent / "cut.jpeg").write_bytes(good.read_bytes()[:100])  # arrives after the launcher's check
    _new_process()
    with pytest.raises(DataError, match="cut.jpeg: truncated"):
        check.check_run_data(recipe)


def test_a_worker_alone_or_of_a_launcher_that_did_not_check_checks_the_images(tmp_path, node, write_ids,
                                                                             demo_recipe, monkeypatch):
    write_ids(tmp_path / "d", "train", 10, classes=2)
    recipe = demo_recipe(tmp_path / "d", val_while_train=False)
    monkeypatch.setenv(LISTINGS_ENV, check.shared_listings_env(recipe))  # listed, never checked here
    checked = []
    real = check._check_split
    monkeypatch.setattr(check, "_check_split", lambda *a: checked.append(a[0]) or real(*a))
    _new_process()
    check.check_run_data(recipe)
    monkeypatch.delenv(LISTINGS_ENV)
    _new_process()
    check.check_run_data(recipe)
    assert checked == ["train", "train"]


def test_a_damaged_or_foreign_listing_file_is_never_used(tmp_path, node, scans, write_ids):
    write_ids(tmp_path / "d", "train", 6, classes=2)
    _age(tmp_path / "d")
    root = os.path.abspath(tmp_path / "d" / "train")
    split_listing(root)
    stored = folder._listing_file(folder.node_cache_dir(), root)
    with open(stored, "r+b") as fh:
        fh.truncate(os.path.getsize(stored) // 2)
    _new_process()
    assert len(split_listing(root).paths) == 6 and len(scans) == 2
    os.replace(stored, folder._listing_file(folder.node_cache_dir(), root + "-other"))  # another split's file
    other = tmp_path / "d" / "train-other"
    other.mkdir()
    _new_process()
    assert folder.load_listing(folder.node_cache_dir(), str(other)) is None  # it names another folder
    os.chmod(folder.node_cache_dir(), 0o777)  # anyone could have planted a listing there
    _new_process()
    split_listing(root)
    assert len(scans) == 3


def test_an_unwritable_cache_still_lists(tmp_path, node, scans, write_ids, monkeypatch):
    write_ids(tmp_path / "d", "train", 6, classes=2)
    monkeypatch.setattr(folder, "store_listing", lambda *a: False)
    assert len(list_image_folder(str(tmp_path / "d"), "train")) == 6


def test_names_that_are_not_utf8_survive_the_listing_file(tmp_path, node, write_ids):
    write_ids(tmp_path / "d", "train", 4, classes=2)
    odd = os.fsencode(str(tmp_path / "d" / "train" / "class0")) + b"/caf\xe9.png"
    with open(odd, "wb") as fh:
        fh.write((tmp_path / "d" / "train" / "class0" / "img0000.png").read_bytes())
    _age(tmp_path / "d")
    split_listing(str(tmp_path / "d" / "train"))
    _new_process()
    listing = split_listing(str(tmp_path / "d" / "train"))
    assert b"class0/caf\xe9.png" in listing.paths.tolist()
    assert os.path.exists(list_image_folder(str(tmp_path / "d"), "train").path(0))


def test_the_launcher_names_the_listing_only_while_its_workers_run(tmp_path, node, write_ids, demo_recipe):
    from incv4.trainer.launcher.plan import shared_data_listing

    write_ids(tmp_path / "d", "train", 6, classes=2)
    recipe = demo_recipe(tmp_path / "d", val_while_train=False)
    with shared_data_listing(recipe):
        shared = json.loads(os.environ[LISTINGS_ENV])
        root = os.path.abspath(tmp_path / "d" / "train")
        assert set(shared["splits"]) == {root}
        assert shared["splits"][root]["checked"] is False  # this process did not check the images
        assert np.array_equal(folder.load_listing(shared["dir"], root).paths, split_listing(root).paths)
    assert LISTINGS_ENV not in os.environ
