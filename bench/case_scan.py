"""Case `scan`: the time until every worker of a node (8) has its file list of an ImageNet-sized train split, today
(each worker scans the tree itself) vs now (the launcher scans once and its workers read the node's listing file,
trainer/data/folder.py), on a first start (nothing cached) and on a restart (the cached listing is still fresh).

The tree: 1,281,167 empty files in 1,000 class folders (ImageNet's train split, names like ImageNet's) made once in
bench/.cache/scan-imagefolder/ and reused; empty files are enough because only the listing is timed (the image
check is not). Every side runs in new processes (a worker's start-up is counted on both sides), with the page cache
warm (one untimed scan first). Today's side is a lower bound: a worker then also listed the tree a second time, in
its data check."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CACHE_DIR, incv4_python, median, worker_env
from bench.results import Row

TREE = CACHE_DIR / "scan-imagefolder"
DONE = CACHE_DIR / "scan-imagefolder.complete"  # written last: a tree without it is made again
NODE_TMP = CACHE_DIR / "scan-node-tmp"  # the node's temporary folder (its listing cache) for the incv4 side
IMAGES, CLASSES, WORKERS = 1_281_167, 1000, 8

# A worker of today: scan the split itself. A worker of now: what list_image_folder does under the launcher.
TODAY = ("import sys, time\nfrom incv4.trainer.data import folder\n"
         "folder.scan_split(sys.argv[1])\nprint(time.time())")
NOW = ("import sys, time\nfrom incv4.trainer.data.folder import list_image_folder\n"
       "list_image_folder(sys.argv[1], 'train')\nprint(time.time())")
LAUNCHER = ("import json, sys, time\nfrom incv4.trainer.data.check import shared_listings_env\n"
            "from types import SimpleNamespace\n"
            "recipe = SimpleNamespace(data_dir=sys.argv[1], train_split='train', val_while_train=False)\n"
            "print(shared_listings_env(recipe))")


def make_tree(log=print) -> None:
    if DONE.exists():
        return
    shutil.rmtree(TREE, ignore_errors=True)
    log(f"  [scan] making {IMAGES:,} empty files in {CLASSES} classes under {TREE} (once)")
    for c in range(CLASSES):
        folder = TREE / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES // CLASSES + (1 if c < IMAGES % CLASSES else 0)):
            os.close(os.open(folder / f"n{c:08d}_{i}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    past = time.time() - 3600  # made long ago as far as the listing's racy check goes
    for path, _, _ in os.walk(TREE):
        os.utime(path, (past, past))
    DONE.write_text(f"{IMAGES} files in {CLASSES} classes\n")


def _env(listings: str = "") -> dict:
    env = worker_env({"TMPDIR": str(NODE_TMP)})
    env.pop("INCV4_DATA_LISTINGS", None)
    if listings:
        env["INCV4_DATA_LISTINGS"] = listings
    return env


def _node(code: str, arg: str, env: dict) -> float:
    """Start a node's workers at once; seconds until the last one has its list."""
    started = time.time()
    procs = [subprocess.Popen([incv4_python(), "-c", code, arg], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(WORKERS)]
    done = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker exited with {proc.returncode}")
        done.append(float(out.strip().splitlines()[-1]))
    return max(done) - started


def _today() -> float:
    return _node(TODAY, str(TREE / "train"), _env())


def _now(first_start: bool) -> float:
    """The launcher's share (scan or reuse, then name the listing) plus its workers reading it."""
    if first_start:
        for name in os.listdir(NODE_TMP):
            shutil.rmtree(NODE_TMP / name, ignore_errors=True)
    started = time.time()
    res = subprocess.run([incv4_python(), "-c", LAUNCHER, str(TREE)], capture_output=True, text=True, env=_env(),
                         check=True, timeout=3600)
    listings = res.stdout.strip().splitlines()[-1]
    if listings == "None":
        raise RuntimeError("the launcher could not share its listing")
    return (time.time() - started) + _node(NOW, str(TREE), _env(listings))


def _tree_bytes() -> int:
    return sum(os.lstat(os.path.join(path, d)).st_blocks * 512 for path, dirs, _ in os.walk(TREE) for d in dirs)


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    make_tree(log)
    NODE_TMP.mkdir(mode=0o700, exist_ok=True)
    os.chmod(NODE_TMP, 0o700)
    _today()  # warm the page cache: both sides then read folders from memory
    rounds = 1 if quick else 3
    today, first, restart = [], [], []
    for _ in range(rounds):  # alternating
        today.append(_today())
        first.append(_now(first_start=True))
        restart.append(_now(first_start=False))
        log(f"  [scan] today {today[-1]:.1f} s, first start {first[-1]:.1f} s, restart {restart[-1]:.1f} s")
    listing_mb = sum(f.stat().st_size for f in NODE_TMP.rglob("*.npz")) / 1e6
    folders_mb = _tree_bytes() / 1e6
    name = f"scan {IMAGES:,} files / {CLASSES} classes, {WORKERS} workers"
    today_name = f"each worker scans (today, {WORKERS} processes)"
    rows = [Row(name + ", first start", "s until every worker has its list", median(first), median(today),
                today_name, False),
            Row(name + ", restart", "s until every worker has its list", median(restart), median(today), today_name,
                False)]
    notes = [f"{rounds} alternating rounds; new processes each time (start-up counted on both sides); page cache warm.",
             f"the tree takes {folders_mb:.0f} MB of folder blocks plus {IMAGES + CLASSES + 2:,} inodes (empty files "
             f"take no data blocks); the node's listing file is {listing_mb:.0f} MB. Remove both with "
             f"`rm -rf bench/.cache/scan-imagefolder* bench/.cache/scan-node-tmp`.",
             "today's side is a lower bound: a worker also listed the tree again in its data check."]
    return rows, notes, {"today_s": today, "first_start_s": first, "restart_s": restart, "python": sys.version}
