"""What `incv4 status` says about how a job ended: a permanent failure (with the pod and its exit code) apart from a
suspension and from used-up restarts."""
from __future__ import annotations

from incv4.operator import job_view
from incv4.trainer import contract


def job(phase: str, retries: int = 0, max_retry: int = 3) -> dict:
    return {"metadata": {"name": "run1", "namespace": "training"}, "spec": {"maxRetry": max_retry},
            "status": {"state": {"phase": phase}, "retryCount": retries}}


def pod(name: str, code: int, where: str = "state") -> dict:
    return {"metadata": {"name": name},
            "status": {"containerStatuses": [{"name": "trainer", where: {"terminated": {"exitCode": code}}}]}}


def test_a_terminated_job_failed_permanently_and_says_why():
    pods = [pod("run1-worker-0", 143), pod("run1-worker-1", contract.DIVERGED)]
    for phase in ("Terminating", "Terminated"):
        text = job_view.outcome(job(phase), pods)
        assert text == "failed permanently: pod run1-worker-1 exited 4: training diverged (non-finite losses in a row)"
    usage = job_view.outcome(job("Terminated"), [pod("run1-worker-0", contract.USAGE, "lastState")])
    assert usage.startswith("failed permanently: pod run1-worker-0 exited 2: a usage error")
    # Without the pods (or with pods that show no permanent code) it still says it is permanent, and where to look.
    assert job_view.outcome(job("Terminated")).startswith("failed permanently: a pod exited with a permanent code, 2")
    assert "incv4 logs" in job_view.outcome(job("Terminated"), [pod("run1-worker-0", 1)])


def test_suspended_and_out_of_retries_are_told_apart_from_permanent_failures():
    for phase in ("Aborting", "Aborted"):
        assert job_view.outcome(job(phase)).startswith("suspended: `incv4 resume`")
    assert job_view.outcome(job("Failed", retries=3)).startswith("failed: the restarts are used up (3 of 3)")
    for phase in ("Pending", "Running", "Restarting", "Completing", "Completed"):
        assert job_view.outcome(job(phase)) is None


def test_status_output_carries_the_outcome():
    pods = [pod("run1-worker-0", contract.DIVERGED)]
    summary = job_view.status_summary(job("Terminated"), "default", None, pods)
    assert summary["outcome"].startswith("failed permanently: pod run1-worker-0 exited 4")
    lines = job_view.status_text(summary).splitlines()
    assert lines[2] == "Phase:       Terminated"
    assert lines[3] == "Outcome:     " + summary["outcome"]
    running = job_view.status_text(job_view.status_summary(job("Running"), "default", None))
    assert "Outcome" not in running
    assert "Outcome:     suspended" in job_view.status_text(job_view.status_summary(job("Aborted"), "default", None))
