"""A process that dies from a signal (trainer/launcher/supervisor.py): named as a data error (exit 2) only when its
data trail leads to an image MindSpore's decoder dies on, a plain retryable failure otherwise; and `run_guarded`,
which gives `incv4 train --workers 1` and `incv4 validate` the same report: exit codes, SystemExit and SIGTERM pass
through the child unchanged."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from jpegs import damage_jpeg, noise_jpegs
from incv4.trainer import contract
from incv4.trainer.launcher.supervisor import Launcher, data_crash_line
from incv4.trainer.launcher.topology import Topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
DEMO = os.path.join(REPO, "configs", "inception_v4_cpu_demo.yaml")
HANG_GUARD = 300  # seconds: only so a broken guard fails the test instead of hanging the suite

# A guarded piece of work in a fresh interpreter (the guard forks: not inside pytest's process).
_GUARDED = """
import os, signal, sys, time
from incv4.trainer.launcher.supervisor import run_guarded

def work():
    mode = sys.argv[1]
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "return3":
        return 3
    if mode == "exit4":
        sys.exit(4)
    if mode == "raise":
        raise KeyError("boom")
    if mode == "term":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("ready", flush=True)
        time.sleep(120)
    if mode == "eval":  # validate's pipeline on argv[2], with no data check in front of it
        from incv4.trainer import recipe as recipes
        from incv4.trainer.data import pipeline
        recipe = recipes.load(sys.argv[3], ["batch_size=4"], data_dir=sys.argv[2])
        for _ in pipeline.create_eval_dataset(recipe, num_parallel_workers=1).create_tuple_iterator(num_epochs=1):
            pass
    print(f"child {os.getpid()} of {os.getppid()}", flush=True)
    return 0

sys.exit(run_guarded(work, "the test process"))
"""


def _guarded(*args):
    return subprocess.run([sys.executable, "-c", _GUARDED, *args], capture_output=True, text=True,
                          timeout=HANG_GUARD)


def _damaged_split(root, split):
    noise_jpegs(root, split)
    damaged = os.path.join(root, split, "c8", "1.JPEG")
    damage_jpeg(damaged)  # issue 19's damaged JPEG: MindSpore's decoder dies with SIGFPE
    return str(root), damaged


def test_the_guarded_work_runs_in_a_child_and_its_exit_code_passes_through():
    done = _guarded("ok")
    assert done.returncode == 0, done.stderr
    child, parent = done.stdout.split()[1::2]
    assert child != parent and done.stderr == ""
    assert _guarded("return3").returncode == 3
    assert _guarded("exit4").returncode == 4
    crashed = _guarded("raise")
    assert crashed.returncode == contract.FAILURE and "KeyError: 'boom'" in crashed.stderr


def test_the_guard_leaves_no_trail_behind_and_removes_those_of_guards_killed_before():
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), f"incv4-data-trails-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    stale = os.path.join(folder, "4194305.json")  # above Linux's largest pid: a guard that is gone
    with open(stale, "w") as fh:
        fh.write("[]")
    before = set(os.listdir(folder)) - {"4194305.json"}
    assert _guarded("ok").returncode == 0
    assert not os.path.exists(stale)
    assert set(os.listdir(folder)) <= before  # its own trail removed too (others may belong to running guards)


def test_a_signal_death_that_is_not_the_decoder_is_one_line_and_retryable():
    done = _guarded("segv")
    assert done.returncode == contract.FAILURE
    assert done.stderr == "error: the test process died from -11 (killed by SIGSEGV)\n"


def test_sigterm_reaches_the_guarded_child():
    proc = subprocess.Popen([sys.executable, "-c", _GUARDED, "term"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == contract.TERMINATED
    finally:
        proc.kill()
        proc.wait()


def test_validates_pipeline_dying_in_the_decoder_is_named_and_exits_2(tmp_path):
    data, damaged = _damaged_split(tmp_path / "data", "val")
    done = _guarded("eval", data, DEMO)
    assert done.returncode == contract.USAGE, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: data: the test process died from SIGFPE in MindSpore's image decoder on {damaged} (the data "
        f"check's decoder accepts it; replace or remove the image: a restart cannot help)")


@pytest.mark.parametrize("worker", [
    "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",  # no dataset built: no trail
    # a trail over images that all decode: the replay names nothing
    "import os, signal, sys\n"
    "from incv4.trainer import recipe as recipes\n"
    "from incv4.trainer.data import pipeline\n"
    "pipeline.create_eval_dataset(recipes.load(sys.argv[1], data_dir=sys.argv[2]))\n"
    "os.kill(os.getpid(), signal.SIGSEGV)",
], ids=["no-trail", "trail-of-good-images"])
def test_a_worker_killed_by_a_signal_outside_the_decoder_stays_a_retryable_failure(tmp_path, worker):
    data, damaged = _damaged_split(tmp_path / "data", "val")
    os.remove(damaged)
    err = io.StringIO()
    launcher = Launcher(Topology(1, 0, "127.0.0.1", 8118, 1), [sys.executable, "-c", worker, DEMO, data],
                        str(tmp_path / "logs"), cluster_timeout=60, grace_period=5, out=io.StringIO(), err=err)
    assert launcher.run() == contract.FAILURE, err.getvalue()
    assert "rank 0 failed with exit -11 (killed by SIGSEGV)" in err.getvalue()
    assert "error: data" not in err.getvalue()


def test_only_a_crash_signal_with_a_trail_is_looked_into(tmp_path):
    trail = tmp_path / "trail.json"
    trail.write_text("not json")
    for code in (None, 0, 1, 2, -signal.SIGKILL, -signal.SIGTERM):
        assert data_crash_line("rank 0", code, str(trail)) is None
    assert data_crash_line("rank 0", -signal.SIGFPE, None) is None
    assert data_crash_line("rank 0", -signal.SIGFPE, str(trail)) is None  # an unreadable trail names nothing
