"""A cluster job's report data from Prometheus, over the job's lifetime, with the series the dashboard reads
(operator/monitoring/dashboard.py; metric names from trainer/contract.py). Read through the HTTP API's
/api/v1/query and /api/v1/query_range (https://prometheus.io/docs/prometheus/latest/querying/api/).

The curves are against the global step: each range query uses the same grid, so a grid point's value pairs with
that point's `max(incv4_global_step)`. The accuracy gauges hold the last evaluation: each change of value is one
evaluation, at the epoch the job was in just before it (a pod's gauges read 0 until its first evaluation, so a
change to 0 is not one)."""
from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Optional

from incv4.operator.report.data import ReportError, RunReport
from incv4.trainer import contract as M

# Points per curve; Prometheus refuses more than 11000 per series (prometheus/prometheus, web/api/v1/api.go).
MAX_POINTS = 2000
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name (DNS subdomain)
_DURATION = re.compile(r"[1-9][0-9]*[smhdwy]")


class _Api:
    def __init__(self, url: str, timeout: float):
        if not url.startswith(("http://", "https://")):
            raise ReportError(f"--prometheus URL must start with http:// or https://, got {url!r}", M.USAGE)
        self.url, self.timeout = url.rstrip("/"), timeout

    def get(self, endpoint: str, **params) -> list:
        address = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            try:
                body = json.load(err)
            except ValueError:
                raise ReportError(f"Prometheus at {self.url} answered HTTP {err.code}", M.FAILURE) from None
        except (urllib.error.URLError, OSError) as err:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {getattr(err, 'reason', err)}",
                              M.FAILURE) from None
        except ValueError:
            raise ReportError(f"{self.url} did not answer like a Prometheus HTTP API", M.FAILURE) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "unknown error") if isinstance(body, dict) else "not a JSON object"
            raise ReportError(f"Prometheus rejected a query: {error}", M.FAILURE)
        return body["data"]["result"]

    def scalar(self, expr: str, at: float) -> Optional[float]:
        result = self.get("query", query=expr, time=f"{at:.3f}")
        value = float(result[0]["value"][1]) if result else None
        return value if value is not None and math.isfinite(value) else None

    def grid(self, expr: str, start: float, end: float, step: int) -> Dict[float, float]:
        """{grid time: value} of a one-series range query ({} when it has no series)."""
        result = self.get("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=str(step))
        return {float(t): float(v) for t, v in result[0]["values"]} if result else {}


def from_prometheus(url: str, namespace: str, job: str, since: str = "30d", timeout: float = 10.0,
                    now: Optional[float] = None) -> RunReport:
    """Raises ReportError: usage for a bad name, URL or duration, failure when Prometheus fails or has no data."""
    for what, value in (("job name", job), ("namespace", namespace)):
        if not _NAME.fullmatch(value):
            raise ReportError(f"{what} {value!r} is not a Kubernetes object name", M.USAGE)
    if not _DURATION.fullmatch(since):
        raise ReportError(f"--since {since!r}: give a Prometheus duration such as 30d or 12h", M.USAGE)
    api, now = _Api(url, timeout), time.time() if now is None else now
    sel = f'{M.NAMESPACE}="{namespace}", {M.JOB_NAME}="{job}"'
    first = api.scalar(f"min(min_over_time(timestamp({M.GLOBAL_STEP}{{{sel}}})[{since}:1m]))", now)
    last = api.scalar(f"max(max_over_time(timestamp({M.GLOBAL_STEP}{{{sel}}})[{since}:1m]))", now)
    if first is None or last is None:
        raise ReportError(f"Prometheus at {api.url} has no incv4 metrics for job {job!r} in namespace "
                          f"{namespace!r} in the last {since}", M.FAILURE)
    start, end = first - 60, last + 60
    report = RunReport(title=f"{namespace}/{job}", source=f"Prometheus {api.url}", seconds=last - first)
    _read_curves(api, sel, report, start, end, max(15, math.ceil((end - start) / MAX_POINTS)))
    _read_facts(api, sel, report, last)
    if not report.points("loss") and not report.points("top1"):
        raise ReportError(f"Prometheus at {api.url} has no training steps of job {job!r} in namespace "
                          f"{namespace!r}", M.FAILURE)
    return report


def _read_curves(api: _Api, sel: str, report: RunReport, start: float, end: float, step: int) -> None:
    window = f"{max(4 * step, 120)}s"  # at least two scrapes in every rate
    steps = api.grid(f"max({M.GLOBAL_STEP}{{{sel}}})", start, end, step)
    rank0 = f'{sel}, {M.RANK}="0"'
    expressions = {
        "loss": f"max({M.LOSS}{{{rank0}}})",
        "lr": f"max({M.LEARNING_RATE}{{{sel}}})",
        "img_per_s": f"sum(rate({M.SAMPLES}{{{sel}}}[{window}]))",
        "data_wait_s": f"sum(rate({M.DATA_WAIT}{{{sel}}}[{window}])) / sum(rate({M.STEPS}{{{sel}}}[{window}]))",
    }
    for key, expr in expressions.items():
        report.curves[key] = _against_step(steps, api.grid(expr, start, end, step))
    epochs = api.grid(f"max({M.EPOCH}{{{sel}}})", start, end, step)
    for key, topk in (("top1", M.TOP1), ("top5", M.TOP5)):
        accuracy = api.grid(f'max({M.EVAL_ACCURACY}{{{sel}, {M.TOPK}="{topk}"}})', start, end, step)
        report.curves[key] = _evaluations(epochs, accuracy)


def _against_step(steps: Dict[float, float], values: Dict[float, float]) -> List[tuple]:
    """(global step, value) for each grid time both hold, one point per step: the first time it was seen (later
    ones are idle time: an evaluation, the end of the run, where the rates fall), step 0 left out: a pod's gauges
    read 0 until its first step."""
    by_step = {}
    for at in sorted(values):
        step, value = steps.get(at), values[at]
        if step and step > 0 and math.isfinite(value):
            by_step.setdefault(int(step), value)
    return sorted(by_step.items())


def _evaluations(epochs: Dict[float, float], accuracy: Dict[float, float]) -> List[tuple]:
    points, previous_value, previous_time = [], 0.0, None
    for at in sorted(accuracy):
        value = accuracy[at]
        if value != previous_value and value != 0 and math.isfinite(value):
            epoch = epochs.get(previous_time, epochs.get(at))
            if epoch is not None:
                points.append((int(epoch), value))
        previous_value, previous_time = value, at
    return points


def _read_facts(api: _Api, sel: str, report: RunReport, at: float) -> None:
    """Global batch, steps and what the build info says of the recipe, at the job's last step."""
    info = api.get("query", query=f"max by ({', '.join(M.BUILD_INFO_LABELS)}) ({M.BUILD_INFO}{{{sel}}})",
                   time=f"{at:.3f}")
    if info:
        labels = {k: v for k, v in info[0]["metric"].items() if k in M.BUILD_INFO_LABELS}
        report.recipe = labels
        if labels.get(M.WORLD_SIZE, "").isdigit() and labels.get("batch_size", "").isdigit():
            report.global_batch = int(labels[M.WORLD_SIZE]) * int(labels["batch_size"])
    step = api.scalar(f"max({M.GLOBAL_STEP}{{{sel}}})", at)
    planned = api.scalar(f"max({M.PLANNED_STEPS}{{{sel}}})", at)
    report.last_step = int(step) if step is not None else None
    report.planned_steps = int(planned) if planned is not None else None
