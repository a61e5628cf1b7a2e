"""incv4's compiled train step under data parallel, with MindSpore's real collectives on the CPU: two ranks under
`incv4 launch`, graph mode, data parallel set up as the trainer does, end where one process with the global batch
ends, for the plain step and MindCV's extras (dynamic loss scale, gradient accumulation, EMA), also when one
rank's gradients overflow (every rank skips that step).

The worker is tests/support/workers/step_extras_worker.py (a BatchNorm-free MLP: BatchNorm statistics would
differ per rank). test_launch.py checks the same in PyNative for the plain step.
Run it alone (several MindSpore processes): `flock /tmp/incv4-heavy.lock pytest <this file>`."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from incv4.trainer import contract
from local_launch import HANG_GUARD, clean_env, launch_worker  # noqa: E402

pytest.importorskip("mindspore")
WORKER = pathlib.Path(__file__).resolve().parents[3] / "support" / "workers" / "step_extras_worker.py"
VARIANTS = ("none", "dynamic", "accumulate", "ema", "dynamic+accumulate+ema", "none+overflow",
            "dynamic+accumulate+ema+overflow")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(the lone process's output folder, the two-rank job's), each with <variant>_rank<r>.npz."""
    tmp = tmp_path_factory.mktemp("step_extras_parallel")
    single = subprocess.run([sys.executable, str(WORKER), "--out", str(tmp / "single")], env=clean_env(),
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert single.returncode == 0, single.stderr[-3000:]
    job = launch_worker(WORKER, tmp, ["--out", str(tmp / "job")])
    assert job.returncode == contract.OK, job.stderr[-3000:]
    return tmp / "single", tmp / "job"


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_ranks_end_where_one_process_with_the_global_batch_ends(trained, variant):
    single, job = trained
    reference = np.load(single / f"{variant}_rank0.npz")
    # the lr schedule moves every finite step, accumulating or not; the EMA counts every finite step (MindCV's
    # follows each accumulation step too); the dynamic scale is a parameter of the step, halved by an overflow
    finite_steps = 3 if "overflow" in variant else 4
    assert int(reference["global_step"][0]) == finite_steps
    assert ("ema" in variant) == ("updates" in reference.files)
    if "ema" in variant:
        assert float(reference["updates"]) == finite_steps
    assert ("dynamic" in variant) == ("loss_scale" in reference.files)
    if "dynamic" in variant:
        assert float(reference["loss_scale"]) == (512.0 if "overflow" in variant else 1024.0)
    assert all(np.isfinite(reference[name]).all() for name in reference.files)
    for rank in (0, 1):
        got = np.load(job / f"{variant}_rank{rank}.npz")
        assert sorted(got.files) == sorted(reference.files)
        for name in reference.files:
            np.testing.assert_allclose(got[name], reference[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"rank {rank}, {name}")


def test_the_weights_moved(trained):
    """A step that did nothing would pass the comparison above."""
    single, _ = trained
    from mindspore import Tensor, nn

    sys.path.insert(0, str(WORKER.parent))
    try:
        import step_extras_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    start = {p.name: p.asnumpy() for p in step_extras_worker._network(nn, Tensor).trainable_params()}
    for variant in VARIANTS:
        end = np.load(single / f"{variant}_rank0.npz")
        for name, value in start.items():
            assert np.abs(end[name] - value).max() > 1e-3, f"{variant}: {name} did not move"
