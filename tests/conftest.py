"""Shared fixtures. Tests that need ../shared/schemas find it through `shared_schemas`."""
import os
import pathlib
import shutil
import tempfile

import pytest

from incv4.trainer import cpu_backend

# Tests build and train MindSpore networks in this process: give them the oneDNN cap the trainer sets for itself
# (trainer/cpu_backend.py), before any MindSpore kernel runs. Without it a test run on an AVX-512 machine is many
# times slower. The tests of the trainer's own cap start their processes without it.
cpu_backend.cap_onednn_isa()

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# Free space the e2e tests need for their temporary files at any one time (the multi-node launch test's checkpoints
# and graph caches, measured at ~3 GB when it ran 8 ranks, now 4); below it, checkpoint writes fail and the tests
# that read them fail.
E2E_DISK_NEEDED = 4 * 10**9
_free_at_start = {}


def _free_bytes() -> int:
    return shutil.disk_usage(tempfile.gettempdir()).free


def pytest_sessionstart(session):
    _free_at_start["bytes"] = _free_bytes()


def pytest_terminal_summary(terminalreporter):
    """Name a short disk when there is one: its symptom (a checkpoint missing) is far from its cause."""
    start, end = _free_at_start.get("bytes"), _free_bytes()
    if start is not None and min(start, end) < E2E_DISK_NEEDED:
        terminalreporter.write_line(
            f"warning: {tempfile.gettempdir()} had {start / 1e9:.1f} GB free at the start and {end / 1e9:.1f} GB "
            f"at the end; the e2e tests need about {E2E_DISK_NEEDED / 1e9:.0f} GB for checkpoints and graph caches")


@pytest.fixture(scope="session", autouse=True)
def _node_data_check_cache():
    """The data check caches its results per node in the temporary folder (trainer/data/check.py); the tests'
    runs write there too. Remove it at the end when the session made it (CI machines are reused)."""
    from incv4.trainer.data.check import node_cache_dir

    path = node_cache_dir()
    existed = os.path.exists(path)
    yield
    if not existed:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _mindspore_failure_dumps():
    """A graph that fails to compile makes MindSpore write rank_<n>/om/analyze_fail.ir under MS_OM_PATH, the working
    directory by default: keep the dumps of tests that fail a compile on purpose (and of their subprocesses) in a
    folder of the session's own, removed at its end."""
    if "MS_OM_PATH" in os.environ:
        yield
        return
    path = tempfile.mkdtemp(prefix="incv4-test-om-")
    os.environ["MS_OM_PATH"] = path
    yield
    os.environ.pop("MS_OM_PATH", None)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_schemas() -> pathlib.Path:
    """The Volcano and Prometheus Operator CRD schemas beside the repo. CI always has them; a user's fresh clone
    may not, and then the tests that need them skip with this reason."""
    path = pathlib.Path(os.environ.get("INCV4_SHARED_SCHEMAS", SHARED / "schemas"))
    if not path.is_dir():
        pytest.skip(f"CRD schemas not found at {path} (set INCV4_SHARED_SCHEMAS)")
    return path


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A tiny demo data set (3 classes, 2 train and 1 val image each) made by `incv4 demo-data`, one per module."""
    from click.testing import CliRunner

    from incv4.operator.cli import main

    out = tmp_path_factory.mktemp("demo") / "data"
    result = CliRunner().invoke(main, ["demo-data", str(out), "--train-per-class", "2", "--val-per-class", "1",
                                       "--num-classes", "3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def fast_backoff(monkeypatch):
    """The cluster client's retries with short waits: real backoff waits 0.5-8 s; the behaviour under test is the
    same with short waits. Cluster-client test modules take it for every test (pytest.mark.usefixtures)."""
    from incv4.operator import cluster as cluster_mod

    monkeypatch.setattr(cluster_mod.Retry, "BASE_DELAY", 0.01)


@pytest.fixture
def pynative():
    """Run a test in PyNative mode (no graph compile), restoring the previous mode after it."""
    import mindspore as ms  # imported here so conftest stays light for the tests that never need MindSpore

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)
