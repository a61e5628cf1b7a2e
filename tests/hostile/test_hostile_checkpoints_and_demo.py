"""Issue 19, hostile inputs around checkpoints and the demo: each ends in one line and the documented exit code,
and nothing incv4 did not write is ever deleted. Every file a test needs is generated here."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from incv4.operator.cli import main

DEMO = "configs/inception_v4_cpu_demo.yaml"


def _one_line_error(result_or_stderr, exit_code, actual_code, *fragments) -> str:
    stderr = result_or_stderr if isinstance(result_or_stderr, str) else result_or_stderr.stderr
    assert actual_code == exit_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- item 2 ---------------------------------------------------------------------------------------------------------

def test_item2_manifest_names_outside_the_folder_are_never_deleted(tmp_path):
    ms = pytest.importorskip("mindspore")
    from mindspore import nn

    from incv4.trainer.checkpoint import store

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    outside = tmp_path / "outside.ckpt"
    absolute = tmp_path / "elsewhere" / "absolute.ckpt"
    linked = tmp_path / "linked-target.ckpt"
    absolute.parent.mkdir()
    for path in (outside, absolute, linked):
        path.write_bytes(b"not incv4's")
    symlink_name = "incv4-e0000-s000000001.ckpt"  # the naming pattern, but a symlink leading out of the folder
    (ckpt / symlink_name).symlink_to(linked)
    crafted = [{"name": "../outside.ckpt", "epoch": 0, "global_step": 0},
               {"name": str(absolute), "epoch": 0, "global_step": 0},
               {"name": symlink_name, "epoch": 0, "global_step": 1}]
    (ckpt / store.MANIFEST).write_text(json.dumps({"latest": symlink_name, "checkpoints": crafted}))

    messages = []
    writer = store.CheckpointWriter(str(ckpt), keep_max=1, log=messages.append)
    saved = writer.save(nn.Dense(3, 2), store.Position(epoch=1, global_step=10))  # keep 1: everything older pruned

    assert saved == str(ckpt / "incv4-e0001-s000000010.ckpt")
    assert outside.read_bytes() == absolute.read_bytes() == linked.read_bytes() == b"not incv4's"
    assert (ckpt / symlink_name).is_symlink()  # not incv4's either: left alone
    [warning] = [m for m in messages if m.startswith("warning: ")]
    assert "../outside.ckpt" in warning and "ignored" in warning
    assert [e.name for e in store.read_manifest(str(ckpt))] == ["incv4-e0001-s000000010.ckpt"]

    # nor is a name leading out of the folder ever loaded, however new the manifest says it is
    newer_outside = tmp_path / "newer.ckpt"
    ms.save_checkpoint(nn.Dense(3, 2), str(newer_outside))
    crafted = [{"name": "incv4-e0001-s000000010.ckpt", "epoch": 1, "global_step": 10},
               {"name": "../newer.ckpt", "epoch": 9, "global_step": 999}]
    (ckpt / store.MANIFEST).write_text(json.dumps({"latest": "../newer.ckpt", "checkpoints": crafted}))
    assert store.load_newest(str(ckpt), log=messages.append).path == saved


# -- item 3 ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """The demo's training, replaced: the tests of its folder must never train."""
    from incv4.trainer import cli as trainer_cli

    calls = []
    monkeypatch.setattr(trainer_cli, "run_training", lambda *args, **kwargs: calls.append(args) or 0)
    return calls


def _demo(work_dir):
    return CliRunner().invoke(main, ["demo", "--work-dir", str(work_dir), "--train-per-class", "1",
                                     "--val-per-class", "1", "--metrics-port", "0"])


def test_item3_demo_never_deletes_a_ckpt_folder_it_did_not_make(tmp_path, no_training):
    foreign = tmp_path / "work" / "ckpt" / "my-notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine")
    result = _demo(tmp_path / "work")
    _one_line_error(result, 2, result.exit_code, f"error: {foreign.parent} exists and was not made by incv4 demo; "
                                                 f"choose another --work-dir or remove it")
    assert foreign.read_text() == "mine"
    assert no_training == [] and not (tmp_path / "work" / "data").exists()  # refused before any work


def test_item3_demo_never_deletes_foreign_files_in_its_own_ckpt_folder(tmp_path, no_training):
    from incv4.trainer.checkpoint import demo_folder

    ckpt = tmp_path / "work" / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / demo_folder.MARKER).write_text("")
    (ckpt / "weights-i-care-about.ckpt").write_text("mine")
    result = _demo(tmp_path / "work")
    _one_line_error(result, 2, result.exit_code, "was not made by incv4 demo")
    assert (ckpt / "weights-i-care-about.ckpt").read_text() == "mine" and no_training == []


def test_item3_demo_empties_its_own_ckpt_folder_on_the_next_run(tmp_path, no_training):
    from incv4.trainer.checkpoint import demo_folder

    ckpt = tmp_path / "work" / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / demo_folder.MARKER).write_text("")
    (ckpt / "incv4-e0001-s000000004.ckpt").write_bytes(b"old")
    (ckpt / "manifest.json").write_text("{}")
    (ckpt / "history.jsonl").write_text('{"kind": "train", "step": 4}\n')  # rank 0's curves of the last run
    (ckpt / "logs").mkdir()
    (ckpt / "logs" / "rank0.log").write_text("old")
    _demo(tmp_path / "work")  # exits 1 (the fake training wrote no checkpoint); the folder was the demo's
    assert len(no_training) == 1
    assert sorted(os.listdir(ckpt)) == [demo_folder.MARKER]


# -- item 7: checkpoints checked before MindSpore loads --------------------------------------------------------------

_CHECK_IN_A_FRESH_INTERPRETER = textwrap.dedent("""
    import json, sys
    from click.testing import CliRunner
    from incv4.operator.cli import main
    results = [CliRunner().invoke(main, args) for args in json.loads(sys.argv[1])]
    print(json.dumps({"mindspore_imported": "mindspore" in sys.modules,
                      "results": [[r.exit_code, r.stderr] for r in results]}))
""")


def test_item7_a_bad_ckpt_path_is_one_line_and_exit_2_before_mindspore_loads(repo_root, demo_data, tmp_path):
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    config, data = str(repo_root / DEMO), str(demo_data)
    cases = [  # (arguments, what the one line must say)
        (["validate", "-c", config, "--data-dir", data, "--ckpt-path", str(tmp_path)], "is a directory"),
        (["train", "-c", config, "--data-dir", data, "--workers", "1", "--ckpt-path", str(tmp_path)],
         "is a directory"),
        (["train", "-c", config, "--data-dir", data, "--workers", "2", "--ckpt_path", str(tmp_path / "absent")],
         "does not exist"),
        (["validate", "-c", config, "--data-dir", data, "--ckpt-path", str(fifo)], "is not a regular file"),
    ]
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "locked.ckpt"
        unreadable.write_bytes(b"x")
        unreadable.chmod(0)
        cases.append((["validate", "-c", config, "--data-dir", data, "--ckpt-path", str(unreadable)],
                      "cannot be read"))
    proc = subprocess.run([sys.executable, "-c", _CHECK_IN_A_FRESH_INTERPRETER,
                           json.dumps([args for args, _ in cases])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for (args, fragment), (code, stderr) in zip(cases, report["results"]):
        _one_line_error(stderr, 2, code, "recipe key 'ckpt_path'", fragment)
    assert report["mindspore_imported"] is False


def test_item7_a_directory_given_to_fine_tune_is_one_line(tmp_path):
    from incv4.trainer.model.finetune import load_finetune_weights
    from incv4.trainer.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"^recipe key 'ckpt_path': checkpoint '.*' is a directory"):
        load_finetune_weights(None, str(tmp_path))


# -- item 11 --------------------------------------------------------------------------------------------------------

def _temporaries(parent) -> list:
    return [n for n in os.listdir(parent) if n.startswith(".") and ".tmp-" in n]


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_item11_interrupted_demo_data_leaves_no_temporary_folder(tmp_path, signum, exit_code):
    out = tmp_path / "data"
    # ~24,000 images: many seconds of work, so the signal always lands mid-write
    proc = subprocess.Popen([sys.executable, "-m", "incv4.operator.cli", "demo-data", str(out),
                             "--train-per-class", "2000", "--val-per-class", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _temporaries(tmp_path):
            assert proc.poll() is None and time.monotonic() < deadline, "demo-data never started writing"
            time.sleep(0.02)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _one_line_error(stderr, exit_code, proc.returncode, "interrupted by", signal.Signals(signum).name)
    assert _temporaries(tmp_path) == [] and not out.exists()


def test_item11_an_interruption_never_strands_the_previous_demo_dataset(tmp_path, monkeypatch):
    # A signal held during the swap of an old dataset for a new one is delivered after it: the new one is in
    # place and the old one removed, never a folder missing and a `.NAME.tmp-*.old` left behind.
    from incv4.trainer.data import demo

    out = tmp_path / "data"
    demo.write_demo_dataset(str(out), num_classes=2, train_per_class=1, val_per_class=1, seed=0)
    real_rename = os.rename

    def rename_then_signal(src, dst):
        real_rename(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)  # held until the swap ends

    def raise_on_sigterm(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_on_sigterm)
    monkeypatch.setattr(demo.os, "rename", rename_then_signal)
    try:
        with pytest.raises(KeyboardInterrupt):
            demo.write_demo_dataset(str(out), num_classes=2, train_per_class=1, val_per_class=1, seed=1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _temporaries(tmp_path) == []
    assert json.loads((out / demo.MARKER).read_text())["seed"] == 1
    assert stat.S_ISDIR(os.stat(out / "train").st_mode)
