"""How a Volcano job is shown by `incv4 list`, `incv4 status` and `incv4 watch`: kubectl-style ages, vcctl's
columns, the status summary and its text, and the one-line training progress. Pure functions of the job object."""
from __future__ import annotations

import datetime
from typing import Optional, Sequence

from incv4.trainer import contract

STATUS_COUNTS = ("pending", "running", "succeeded", "failed", "terminating", "unknown")


def parse_timestamp(timestamp) -> Optional[datetime.datetime]:
    """An RFC 3339 time as Kubernetes writes it (2026-12-02T10:00:00Z, also with fractional seconds or an offset),
    in UTC; None when it is not one."""
    if not isinstance(timestamp, str):
        return None
    text = timestamp.strip()
    text = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    whole, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes at most 6 fraction digits before Python 3.11: keep microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[:min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)).astimezone(
        datetime.timezone.utc)


def age(timestamp, now=None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d; <unknown> without a readable timestamp."""
    then = parse_timestamp(timestamp)
    if then is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.datetime.now(datetime.timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def phase(job: dict) -> str:
    return ((job.get("status") or {}).get("state") or {}).get("phase") or "Pending"


# What a permanent exit code (contract.PERMANENT) means, for `incv4 status`.
PERMANENT_MEANINGS = {
    contract.USAGE: "a usage error (bad flags, recipe, data or Volcano environment)",
    contract.DIVERGED: "training diverged (non-finite losses in a row)",
}
# The phases a job reaches through each ending (Volcano's pkg/controllers/job/state): the policies' TerminateJob on a
# permanent exit code, `incv4 suspend`'s AbortJob, and maxRetry restarts used up.
TERMINATED_PHASES = ("Terminating", "Terminated")
SUSPENDED_PHASES = ("Aborting", "Aborted")


def permanent_exit(pods: Optional[Sequence[dict]]) -> Optional[str]:
    """`pod <name> exited <code>: <meaning>` for the first pod whose container ended with a permanent code, or None."""
    for pod in pods or ():
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            for state in (status.get("state"), status.get("lastState")):
                code = ((state or {}).get("terminated") or {}).get("exitCode")
                if code in PERMANENT_MEANINGS:
                    name = (pod.get("metadata") or {}).get("name", "?")
                    return f"pod {name} exited {code}: {PERMANENT_MEANINGS[code]}"
    return None


def outcome(job: dict, pods: Optional[Sequence[dict]] = None) -> Optional[str]:
    """How a job ended, when that is more than its phase says: failed permanently (with the reason from `pods`, the
    job's pods, when given), suspended, or out of retries; None while it runs or when it completed."""
    current = phase(job)
    if current in TERMINATED_PHASES:
        codes = " or ".join(f"{code} ({meaning.split(' (')[0]})" for code, meaning in PERMANENT_MEANINGS.items())
        reason = permanent_exit(pods) or f"a pod exited with a permanent code, {codes}; see `incv4 logs`"
        return f"failed permanently: {reason}"
    if current in SUSPENDED_PHASES:
        return "suspended: `incv4 resume` continues from the last checkpoint"
    if current == "Failed":
        status = job.get("status") or {}
        tries = f" ({status.get('retryCount', 0)} of {(job.get('spec') or {}).get('maxRetry', '?')})"
        return f"failed: the restarts are used up{tries}; `incv4 logs` tells why the pods failed"
    return None


def job_row(job: dict) -> dict:
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    return {
        "NAMESPACE": job["metadata"].get("namespace", ""),
        "NAME": job["metadata"]["name"],
        "AGE": age(job["metadata"].get("creationTimestamp")),
        "PHASE": phase(job),
        "REPLICAS": sum(int(t.get("replicas", 1)) for t in spec.get("tasks") or []),
        "MIN": status.get("minAvailable", spec.get("minAvailable", 0)),
        "PENDING": status.get("pending", 0),
        "RUNNING": status.get("running", 0),
        "SUCCEEDED": status.get("succeeded", 0),
        "FAILED": status.get("failed", 0),
        "RETRIES": status.get("retryCount", 0),
    }


def table(rows, columns) -> str:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    lines = ["   ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["   ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def format_progress(progress: dict) -> str:
    """One line: step 25/100  epoch 2  img/s 7.9  loss 2.0000  top-1 0.3750  ETA 0:00:37 ('-' where unknown)."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    step = progress.get("step")
    if step is not None and progress.get("planned_steps"):
        step = f"{step}/{progress['planned_steps']}"
    eta = progress.get("eta_seconds")
    eta = str(datetime.timedelta(seconds=int(eta))) if eta is not None else None
    return "  ".join([f"step {fmt(step, '')}", f"epoch {fmt(progress.get('epoch'), '')}",
                      f"img/s {fmt(progress.get('images_per_second'), '.1f')}",
                      f"loss {fmt(progress.get('loss'), '.4f')}", f"top-1 {fmt(progress.get('top1'), '.4f')}",
                      f"ETA {fmt(eta, '')}"])


def status_summary(job: dict, default_namespace: str, progress: Optional[dict],
                   pods: Optional[Sequence[dict]] = None) -> dict:
    """What `incv4 status` reports about a job (its -o yaml/json body); `pods`, the job's pods, name the exit code of
    a permanent failure."""
    st = job.get("status") or {}
    state = st.get("state") or {}
    return {
        "name": job["metadata"]["name"], "namespace": job["metadata"].get("namespace", default_namespace),
        "phase": phase(job), "outcome": outcome(job, pods), "reason": state.get("reason"),
        "message": state.get("message"),
        "minAvailable": st.get("minAvailable"), "retries": st.get("retryCount", 0),
        "maxRetry": (job.get("spec") or {}).get("maxRetry"),
        "counts": {k: st.get(k, 0) for k in STATUS_COUNTS},
        "tasks": st.get("taskStatusCount") or {}, "conditions": st.get("conditions") or [],
        "progress": progress,
    }


def status_text(summary: dict) -> str:
    """`incv4 status`'s table output: one `Label:  value` line per item."""
    lines = [f"Name:        {summary['name']}", f"Namespace:   {summary['namespace']}",
             f"Phase:       {summary['phase']}"]
    if summary.get("outcome"):
        lines.append(f"Outcome:     {summary['outcome']}")
    if summary["reason"] or summary["message"]:
        lines.append(f"Reason:      {summary['reason'] or '-'}: {summary['message'] or ''}".rstrip())
    lines.append(f"Min:         {summary['minAvailable']}")
    lines.append(f"Retries:     {summary['retries']}" + (f" of {summary['maxRetry']}" if summary["maxRetry"] is not None
                                                        else ""))
    lines.append("Pods:        " + "  ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    for task, counts in sorted(summary["tasks"].items()):
        phases = (counts or {}).get("phase") or {}
        lines.append(f"Task {task}:".ljust(13) + ("  ".join(f"{p} {n}" for p, n in sorted(phases.items())) or "-"))
    if summary["conditions"]:
        lines.append("Conditions:")
        lines += [f"  {c.get('lastTransitionTime', '')}  {c.get('status', '')}" for c in summary["conditions"]]
    if summary["progress"]:
        lines.append(f"Progress:    {format_progress(summary['progress'])}")
    return "\n".join(lines)
