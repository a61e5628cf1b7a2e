"""Shared fixtures. Tests that need ../shared/schemas find it through `shared_schemas`."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


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


@pytest.fixture
def pynative():
    """Run a test in PyNative mode (no graph compile), restoring the previous mode after it."""
    import mindspore as ms  # imported here so conftest stays light for the tests that never need MindSpore

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)
