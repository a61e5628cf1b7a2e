"""Opt-in, against a REAL cluster with Volcano: submit a small CPU-only job, watch it to Completed, read its logs and
status, delete it; `incv4 doctor` first. Skipped unless INCV4_E2E_KUBECONFIG names a kubeconfig (see docs/testing.md, "Testing on a real cluster":
kind + Volcano's Helm chart + a CPU build of the image + demo data mounted into the kind node).

Environment:
  INCV4_E2E_KUBECONFIG          kubeconfig of the cluster (required)
  INCV4_E2E_CONTEXT             context [the kubeconfig's current one]
  INCV4_E2E_NAMESPACE           namespace [default]
  INCV4_E2E_IMAGE               image with incv4 on a CPU MindSpore [incv4:cpu]
  INCV4_E2E_DATASET_HOST_PATH   ImageFolder root on the node(s) [/incv4-demo-data]
  INCV4_E2E_DATASET_PVC         a PVC with the dataset instead of the host path
  INCV4_E2E_QUEUE               Volcano queue [default]
  INCV4_E2E_TIMEOUT             seconds to wait for Completed [1800]
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

KUBECONFIG = os.environ.get("INCV4_E2E_KUBECONFIG")

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="needs a cluster with Volcano: set INCV4_E2E_KUBECONFIG (docs/testing.md, "
                                              "'Testing on a real cluster')"),
]


def incv4(*args, timeout=300):
    command = [sys.executable, "-m", "incv4.operator.cli", *args, "--kubeconfig", KUBECONFIG,
               "-n", os.environ.get("INCV4_E2E_NAMESPACE", "default")]
    if os.environ.get("INCV4_E2E_CONTEXT"):
        command += ["--context", os.environ["INCV4_E2E_CONTEXT"]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_submit_watch_logs_delete_a_small_cpu_job(repo_root):
    name = f"incv4-e2e-{secrets.token_hex(3)}"
    dataset = (["--dataset-pvc", os.environ["INCV4_E2E_DATASET_PVC"]] if os.environ.get("INCV4_E2E_DATASET_PVC")
               else ["--dataset-host-path", os.environ.get("INCV4_E2E_DATASET_HOST_PATH", "/incv4-demo-data")])
    spec = ["--name", name, "--image", os.environ.get("INCV4_E2E_IMAGE", "incv4:cpu"), *dataset,
            "--chip", "cpu", "--npus", "1", "--nodes", "1", "--shm-size", "1Gi", "--max-retry", "0",
            "--queue", os.environ.get("INCV4_E2E_QUEUE", "default"),
            "-c", str(repo_root / "configs" / "inception_v4_cpu_demo.yaml"),
            "--set", "epoch_size=1", "--set", "warmup_epochs=0", "--set", "decay_epochs=1"]
    # incv4 doctor reads the real cluster: Volcano's CRDs, scheduler and queue, the nodes, the namespace.
    checked = incv4("doctor", *spec)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    # The API server (Volcano's admission webhook included) validates the exact objects first.
    dry = incv4("submit", *spec, "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    submitted = incv4("submit", *spec)
    assert submitted.returncode == 0, submitted.stderr
    try:
        listed = incv4("list")
        assert listed.returncode == 0 and name in listed.stdout, listed.stderr
        watched = incv4("watch", name, "--interval", "30",
                        timeout=int(os.environ.get("INCV4_E2E_TIMEOUT", "1800")))
        logs = incv4("logs", name, "--tail", "50")
        assert watched.returncode == 0, f"{watched.stdout}\n{watched.stderr}\n--- logs ---\n{logs.stdout}"
        assert watched.stdout.strip().splitlines()[-1].split()[2] == "Completed"
        assert logs.returncode == 0 and logs.stdout.strip(), logs.stderr
        status = incv4("status", name)
        assert "Phase:       Completed" in status.stdout, status.stdout + status.stderr
    finally:
        deleted = incv4("delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert f"job.batch.volcano.sh/{name} deleted" in deleted.stdout
    gone = incv4("status", name)
    assert gone.returncode == 1 and "not found" in gone.stderr
