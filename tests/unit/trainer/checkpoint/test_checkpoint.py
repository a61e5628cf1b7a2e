"""Checkpoints: atomic writes, the manifest, pruning, damaged files skipped, full disk survived, a kill mid-write.
A tiny Dense network stands in for InceptionV4: the file handling does not depend on the network."""
from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from incv4.trainer.checkpoint import store  # noqa: E402
from incv4.trainer.checkpoint.store import CheckpointWriter, Position  # noqa: E402

WORKERS_DIR = str(pathlib.Path(__file__).resolve().parents[3] / "support" / "workers")


class RecordingMetrics:
    def __init__(self):
        self.saved, self.failed = [], 0

    def checkpoint_saved(self, seconds):
        self.saved.append(seconds)

    def checkpoint_failed(self):
        self.failed += 1


def _net(value: float) -> nn.Cell:
    net = nn.Dense(3, 2)
    net.weight.set_data(ms.Tensor(np.full((2, 3), value, np.float32)))
    return net


def _ckpt_files(directory) -> list:
    return sorted(n for n in os.listdir(directory) if n.endswith(".ckpt") and not n.startswith("."))


def test_save_is_complete_named_and_listed_in_the_manifest(tmp_path):
    metrics, messages = RecordingMetrics(), []
    writer = CheckpointWriter(str(tmp_path), keep_max=3, metrics=metrics, log=messages.append)
    path = writer.save(_net(1.5), Position(epoch=2, global_step=40, step_in_epoch=0), {"top1": 0.5})
    assert path == str(tmp_path / "incv4-e0002-s000000040.ckpt")
    assert _ckpt_files(tmp_path) == ["incv4-e0002-s000000040.ckpt"]  # no temporary left behind
    manifest = json.loads((tmp_path / store.MANIFEST).read_text())
    assert manifest["latest"] == "incv4-e0002-s000000040.ckpt"
    assert manifest["checkpoints"][0]["extra"] == {"top1": 0.5}
    loaded = store.load_newest(str(tmp_path), log=messages.append)
    assert loaded.position == Position(epoch=2, global_step=40, step_in_epoch=0)
    assert np.allclose(loaded.params["weight"].asnumpy(), 1.5)
    assert store.EPOCH_KEY not in loaded.params  # incv4's position never reaches load_param_into_net
    assert len(metrics.saved) == 1 and metrics.failed == 0 and messages == []


def test_only_the_newest_keep_max_are_kept(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=2, log=lambda m: None)
    for epoch in range(1, 5):
        writer.save(_net(float(epoch)), Position(epoch=epoch, global_step=10 * epoch))
    assert _ckpt_files(tmp_path) == ["incv4-e0003-s000000030.ckpt", "incv4-e0004-s000000040.ckpt"]
    names = [e.name for e in store.read_manifest(str(tmp_path))]
    assert names == _ckpt_files(tmp_path)


def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=5, log=lambda m: None)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    newest = writer.save(_net(2.0), Position(epoch=2, global_step=20))
    os.chmod(newest, 0o600)
    data = bytearray(open(newest, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: MindSpore's CRC check must catch it
    open(newest, "wb").write(bytes(data))
    messages = []
    loaded = store.load_newest(str(tmp_path), log=messages.append)
    assert loaded.position.epoch == 1 and np.allclose(loaded.params["weight"].asnumpy(), 1.0)
    assert len(messages) == 1 and "warning" in messages[0] and "incv4-e0002-s000000020.ckpt" in messages[0]


def test_a_truncated_checkpoint_is_skipped_too(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=5, log=lambda m: None)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    newest = writer.save(_net(2.0), Position(epoch=2, global_step=20))
    os.chmod(newest, 0o600)
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 3)
    loaded = store.load_newest(str(tmp_path), log=lambda m: None)
    assert loaded.position.global_step == 10


def test_full_disk_is_one_clear_error_and_a_metric_and_the_previous_stays_newest(tmp_path, monkeypatch):
    metrics, messages = RecordingMetrics(), []
    writer = CheckpointWriter(str(tmp_path), keep_max=5, metrics=metrics, log=messages.append)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))

    def full_disk(save_obj, name, **kwargs):
        with open(name, "wb") as fh:  # a partial temporary, as a real full disk leaves
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(ms, "save_checkpoint", full_disk)
    assert writer.save(_net(2.0), Position(epoch=2, global_step=20)) is None
    assert metrics.failed == 1
    assert len(messages) == 1 and "no space left on the device" in messages[0] and "\n" not in messages[0]
    assert _ckpt_files(tmp_path) == ["incv4-e0001-s000000010.ckpt"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert store.read_manifest(str(tmp_path))[-1].global_step == 10


def test_a_disk_too_small_for_the_kept_checkpoints_is_named_at_the_start(tmp_path, monkeypatch):
    import shutil

    net = _net(1.0)  # 3x2 weights + 2 biases, float32: 32 bytes a checkpoint
    messages = []
    writer = CheckpointWriter(str(tmp_path / "not-yet"), keep_max=3, log=messages.append)
    usage = shutil.disk_usage(tmp_path)
    asked = []

    def disk_usage(path):
        asked.append(path)
        return usage._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    free = 4 * 32  # exactly keep_max + 1 checkpoints
    writer.warn_if_short_of_space(net)
    assert messages == [] and asked == [str(tmp_path)]  # the disk the missing directory will be created on
    free = 4 * 32 - 1
    writer.warn_if_short_of_space(net)
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith(f"warning: {tmp_path / 'not-yet'} has 0.00 GB free;")
    assert "keep_checkpoint_max 3" in messages[0]
    monkeypatch.chdir(tmp_path)  # a relative ckpt_save_dir, as in the recipes: the disk of the working directory
    asked.clear()
    CheckpointWriter("ckpt/run", keep_max=3, log=messages.append).warn_if_short_of_space(net)
    assert asked == [str(tmp_path)] and len(messages) == 2


def test_without_a_manifest_complete_files_are_found_and_temporaries_ignored(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=5, log=lambda m: None)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    os.remove(tmp_path / store.MANIFEST)
    (tmp_path / ".tmp-incv4-e0002-s000000020.ckpt").write_bytes(b"half written")
    assert [e.name for e in store.candidates(str(tmp_path))] == ["incv4-e0001-s000000010.ckpt"]
    store.remove_stale_temporaries(str(tmp_path))
    assert _ckpt_files(tmp_path) == ["incv4-e0001-s000000010.ckpt"]
    assert store.load_newest(str(tmp_path)).position.global_step == 10


def test_an_empty_or_missing_directory_has_nothing_to_resume(tmp_path):
    assert store.load_newest(str(tmp_path / "absent")) is None
    assert store.load_newest(str(tmp_path)) is None


def test_a_kill_during_a_slowed_write_leaves_the_previous_checkpoint_newest(tmp_path):
    """A real process is SIGKILLed while its (slowed) checkpoint write is in progress."""
    writer = CheckpointWriter(str(tmp_path), keep_max=5, log=lambda m: None)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    script = textwrap.dedent(f"""
        import numpy as np, mindspore as ms
        from mindspore import nn
        from slow_checkpoint_worker import hold_checkpoint_writes
        from incv4.trainer.checkpoint.store import CheckpointWriter, Position
        hold_checkpoint_writes(60)
        net = nn.Dense(3, 2)
        print("writing", flush=True)
        CheckpointWriter({str(tmp_path)!r}, keep_max=5).save(net, Position(epoch=2, global_step=20))
        print("finished", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([WORKERS_DIR] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        temporary = tmp_path / ".tmp-incv4-e0002-s000000020.ckpt"
        deadline = time.monotonic() + 120
        while not temporary.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert temporary.exists(), "the writer never started its temporary file"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "finished" not in proc.stdout.read()
    assert _ckpt_files(tmp_path) == ["incv4-e0001-s000000010.ckpt"]
    assert store.read_manifest(str(tmp_path))[-1].global_step == 10
    store.remove_stale_temporaries(str(tmp_path))  # what the next start does first
    assert not temporary.exists()
    loaded = store.load_newest(str(tmp_path))
    assert loaded.position.global_step == 10 and np.allclose(loaded.params["weight"].asnumpy(), 1.0)


def test_set_aside_moves_another_runs_checkpoints_out_of_the_way(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=5, log=lambda m: None)
    writer.save(_net(1.0), Position(epoch=3, global_step=30))
    moved = store.set_aside(str(tmp_path))
    assert moved and os.path.dirname(moved) == str(tmp_path)
    assert sorted(os.listdir(moved)) == ["incv4-e0003-s000000030.ckpt", store.MANIFEST]
    assert store.load_newest(str(tmp_path)) is None  # a fresh run no longer sees the old one
    assert store.set_aside(str(tmp_path)) is None
