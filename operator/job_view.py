"""How a Volcano job is shown by `incv4 list`, `incv4 status` and `incv4 watch`: kubectl-style ages, vcctl's
columns, the status summary and its text, and the one-line training progress. Pure functions of the job object."""
from __future__ import annotations

import datetime
from typing import Optional

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


def status_summary(job: dict, default_namespace: str, progress: Optional[dict]) -> dict:
    """What `incv4 status` reports about a job (its -o yaml/json body)."""
    st = job.get("status") or {}
    state = st.get("state") or {}
    return {
        "name": job["metadata"]["name"], "namespace": job["metadata"].get("namespace", default_namespace),
        "phase": phase(job), "reason": state.get("reason"), "message": state.get("message"),
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
