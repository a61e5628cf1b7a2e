"""The asynchronous checkpoint writer: the parameters are copied before training goes on, the manifest names a
checkpoint only once its file is complete, one save is in flight at most, and a process ends only after its save
in flight is complete, also when SIGTERM stops it."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from incv4.trainer.checkpoint import store  # noqa: E402
from incv4.trainer.checkpoint.store import CheckpointWriter, Position  # noqa: E402

WORKERS_DIR = str(pathlib.Path(__file__).resolve().parents[3] / "support" / "workers")


def _net(value: float) -> nn.Cell:
    net = nn.Dense(3, 2)
    net.weight.set_data(ms.Tensor(np.full((2, 3), value, np.float32)))
    return net


@pytest.fixture
def held_writes(monkeypatch):
    """ms.save_checkpoint blocks after writing its file until the test releases it."""
    release, writing = threading.Event(), threading.Event()
    real = ms.save_checkpoint

    def held(*args, **kwargs):
        real(*args, **kwargs)
        writing.set()
        assert release.wait(60), "the test never released the write"

    monkeypatch.setattr(ms, "save_checkpoint", held)
    yield writing, release
    release.set()


def test_the_parameters_are_copied_before_save_returns(tmp_path, held_writes):
    writing, release = held_writes
    net = _net(1.0)
    writer = CheckpointWriter(str(tmp_path), keep_max=3, log=pytest.fail, asynchronous=True)
    path = writer.save(net, Position(epoch=1, global_step=10))
    net.weight.set_data(ms.Tensor(np.full((2, 3), 7.0, np.float32)))  # training goes on
    assert writing.wait(60)
    assert not os.path.exists(path)  # written to its temporary name, not yet renamed
    assert store.read_manifest(str(tmp_path)) == []  # never names an incomplete file
    release.set()
    writer.wait()
    assert store.read_manifest(str(tmp_path))[-1].name == os.path.basename(path)
    loaded = store.load_newest(str(tmp_path))
    assert np.allclose(loaded.params["weight"].asnumpy(), 1.0) and loaded.position.global_step == 10


def test_the_checkpoint_keeps_the_position_it_was_asked_for_while_the_loop_counts_on(tmp_path, monkeypatch):
    # The loop passes its own Position and goes on counting steps in it while the thread writes.
    start = threading.Event()
    real = CheckpointWriter._write

    def late(self, *args):
        assert start.wait(60), "the test never let the write start"
        return real(self, *args)

    monkeypatch.setattr(CheckpointWriter, "_write", late)
    writer = CheckpointWriter(str(tmp_path), keep_max=3, log=pytest.fail, asynchronous=True)
    position = Position(epoch=1, global_step=5)
    path = writer.save(_net(1.0), position)
    position.global_step, position.step_in_epoch = 6, 1
    start.set()
    writer.wait()
    assert [(e.name, e.global_step, e.epoch) for e in store.read_manifest(str(tmp_path))] == [
        (os.path.basename(path), 5, 1)]
    assert store.load_newest(str(tmp_path)).position == Position(epoch=1, global_step=5)


def test_a_second_save_waits_for_the_one_in_flight(tmp_path, held_writes):
    writing, release = held_writes
    writer = CheckpointWriter(str(tmp_path), keep_max=3, log=pytest.fail, asynchronous=True)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    assert writing.wait(60)
    second = threading.Thread(target=writer.save, args=(_net(2.0), Position(epoch=2, global_step=20)))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting: one save in flight at most
    release.set()
    second.join(60)
    writer.wait()
    assert [e.global_step for e in store.read_manifest(str(tmp_path))] == [10, 20]


def test_a_failed_background_write_is_one_line_and_counted(tmp_path, monkeypatch):
    import errno

    failed, messages = [], []

    class Metrics:
        def checkpoint_saved(self, seconds):
            pytest.fail("a failed write is not a save")

        def checkpoint_failed(self):
            failed.append(1)

    def full_disk(save_obj, name, **kwargs):
        with open(name, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(ms, "save_checkpoint", full_disk)
    writer = CheckpointWriter(str(tmp_path), keep_max=3, metrics=Metrics(), log=messages.append, asynchronous=True)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    writer.wait()
    assert failed == [1] and len(messages) == 1 and "no space left on the device" in messages[0]
    assert os.listdir(tmp_path) == []


def test_an_unexpected_error_in_the_background_is_reported_too(tmp_path, monkeypatch):
    messages = []
    monkeypatch.setattr(ms, "save_checkpoint", lambda *a, **k: (_ for _ in ()).throw(TypeError("odd")))
    writer = CheckpointWriter(str(tmp_path), keep_max=3, log=messages.append, asynchronous=True)
    writer.save(_net(1.0), Position(epoch=1, global_step=10))
    writer.wait()
    assert len(messages) == 1 and messages[0].startswith("error: checkpoint incv4-e0001-s000000010.ckpt was not")


@pytest.mark.parametrize("ending", ["return", "sigterm"])
def test_the_process_ends_only_after_the_save_in_flight_is_complete(tmp_path, ending):
    """A real process saves (slowed), then returns from main or is stopped by SIGTERM the way the trainer is
    (its handler asks the loop to stop, the loop returns): the checkpoint is complete and listed."""
    script = textwrap.dedent(f"""
        import signal, sys, threading, numpy as np, mindspore as ms
        from mindspore import nn
        from slow_checkpoint_worker import hold_checkpoint_writes
        from incv4.trainer.checkpoint.store import CheckpointWriter, Position
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        hold_checkpoint_writes(3)
        net = nn.Dense(3, 2)
        net.weight.set_data(ms.Tensor(np.full((2, 3), 4.0, np.float32)))
        CheckpointWriter({str(tmp_path)!r}, keep_max=5, asynchronous=True).save(net, Position(epoch=2, global_step=20))
        print("saved", flush=True)
        if {ending!r} == "sigterm":
            stop.wait(60)
        sys.exit(143 if stop.is_set() else 0)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([WORKERS_DIR] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        if ending == "sigterm":
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == (143 if ending == "sigterm" else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    manifest = json.loads((tmp_path / store.MANIFEST).read_text())
    assert manifest["latest"] == "incv4-e0002-s000000020.ckpt"
    loaded = store.load_newest(str(tmp_path))
    assert np.allclose(loaded.params["weight"].asnumpy(), 4.0)


def test_the_synchronous_writer_is_unchanged(tmp_path):
    writer = CheckpointWriter(str(tmp_path), keep_max=3, log=pytest.fail)
    path = writer.save(_net(2.0), Position(epoch=1, global_step=10))
    assert os.path.exists(path) and store.read_manifest(str(tmp_path))[-1].global_step == 10
