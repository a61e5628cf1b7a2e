"""Training progress (step, epoch, img/s, loss, top-1, ETA) read from incv4's metrics, for `incv4 status` and
`incv4 watch`. Light on purpose: prometheus_client's text parser and urllib, nothing else.

Two sources:
- `from_metrics_text(pages)`: one or more /metrics pages (a launcher's page carries its pod's ranks), read through
  the API server's pod proxy. A single page has no time axis, so img/s and ETA come from the ranks' cumulative
  counters: per-rank images per step over the mean time per step (compute + input wait, the compile step left
  out), scaled to the job's world size when the pages hold fewer ranks than the job has. Pass the `previous`
  Progress (as `incv4 watch` can) to get the rate between the two reads instead.
- `from_prometheus(url, namespace, job)`: instant queries to a Prometheus HTTP API; img/s and ETA are rates over
  the last `window`.
"""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Union

from incv4.trainer import contract as M


class ProgressError(RuntimeError):
    """Progress could not be read; the message is one line that says why."""


@dataclass
class Progress:
    step: Optional[int] = None              # global step reached (max over ranks)
    planned_steps: Optional[int] = None
    epoch: Optional[int] = None
    images_per_second: Optional[float] = None   # the whole job
    loss: Optional[float] = None            # rank 0's, else the mean over the ranks seen
    top1: Optional[float] = None            # last validation, as a fraction
    top5: Optional[float] = None
    eta_seconds: Optional[float] = None
    last_step_age_seconds: Optional[float] = None
    ranks: int = 0                          # ranks whose metrics were read
    world_size: Optional[int] = None
    # cumulative counters and the read time, kept so a later read can compute rates against this one
    samples_total: float = field(default=0.0, repr=False)
    read_at: float = field(default_factory=time.time, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples_total")
        d.pop("read_at")
        return d


def _family_values(pages: Iterable[str]) -> dict:
    """{metric family: [(labels, value, sample name)]} over every page."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for page in pages:
        try:
            families = list(text_string_to_metric_families(page))
        except ValueError as err:
            raise ProgressError(f"not a Prometheus metrics page ({err})") from None
        for family in families:
            for s in family.samples:
                out.setdefault(family.name, []).append((s.labels, s.value, s.name))
    return out


def _per_rank(values: dict, metric: M.Metric, sample: Optional[str] = None) -> dict:
    """{rank: value} of one metric (of one of its series, e.g. a histogram's `_sum`, when `sample` is given)."""
    out = {}
    for labels, value, name in values.get(metric.family, []):
        if M.RANK in labels and (sample is None or name == sample):
            out[labels[M.RANK]] = out.get(labels[M.RANK], 0.0) + value
    return out


def _finite(value):
    return value if value is not None and math.isfinite(value) else None


def from_metrics_text(text_or_texts: Union[str, Iterable[str]], previous: Optional[Progress] = None,
                      now: Optional[float] = None) -> Progress:
    """Progress from one /metrics page or several (one per pod). Raises ProgressError when no incv4 series is
    found."""
    pages = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
    values = _family_values(pages)
    now = time.time() if now is None else now
    step = _per_rank(values, M.GLOBAL_STEP)
    if not step and not _per_rank(values, M.BUILD_INFO):
        raise ProgressError("no incv4 metrics on the page (is this a training pod's /metrics?)")
    planned = _per_rank(values, M.PLANNED_STEPS)
    epoch = _per_rank(values, M.EPOCH)
    loss = _per_rank(values, M.LOSS)
    last = _per_rank(values, M.LAST_STEP_TIMESTAMP)
    # the parser names counter families without `_total`, histogram ones without `_sum`/`_count`
    steps = _per_rank(values, M.STEPS, M.STEPS.name)
    samples = _per_rank(values, M.SAMPLES, M.SAMPLES.name)
    wait = _per_rank(values, M.DATA_WAIT, M.DATA_WAIT.name)
    step_sum = _per_rank(values, M.STEP_DURATION, M.STEP_DURATION.sum)
    step_count = _per_rank(values, M.STEP_DURATION, M.STEP_DURATION.count)
    ranks = set(_per_rank(values, M.BUILD_INFO)) | set(step)
    world = [int(labels[M.WORLD_SIZE]) for labels, _, _ in values.get(M.BUILD_INFO.family, [])
             if labels.get(M.WORLD_SIZE, "").isdigit()]

    p = Progress(ranks=len(ranks), world_size=max(world) if world else None, read_at=now)
    p.step = int(max(step.values())) if step else None
    p.planned_steps = int(max(planned.values())) if planned else None
    p.epoch = int(max(epoch.values())) if epoch else None
    p.loss = _finite(loss["0"] if "0" in loss else (sum(loss.values()) / len(loss) if loss else None))
    for topk in (M.TOP1, M.TOP5):
        acc = [v for labels, v, _ in values.get(M.EVAL_ACCURACY.family, []) if labels.get(M.TOPK) == topk]
        setattr(p, f"top{topk}", max(acc) if acc else None)
    p.last_step_age_seconds = max(0.0, now - max(last.values())) if last else None
    p.samples_total = sum(samples.values())
    scale = (p.world_size / len(ranks)) if p.world_size and ranks else 1.0

    # img/s of the ranks read: from the previous read when there is one, else from cumulative counters
    rate = None
    if previous is not None and now > previous.read_at and p.samples_total >= previous.samples_total > 0:
        rate = (p.samples_total - previous.samples_total) / (now - previous.read_at)
    else:
        per_rank = []
        for r in samples:
            n_steps, count = steps.get(r, 0.0), step_count.get(r, 0.0)
            if n_steps > 0 and count > 0:
                seconds_per_step = step_sum.get(r, 0.0) / count + wait.get(r, 0.0) / n_steps
                if seconds_per_step > 0:
                    per_rank.append((samples[r] / n_steps) / seconds_per_step)
        rate = sum(per_rank) if per_rank else None
    if rate is not None:
        p.images_per_second = rate * scale
    if p.images_per_second and p.step is not None and p.planned_steps:
        samples_per_step = _samples_per_step(samples, steps) * (p.world_size or len(ranks) or 1)
        if samples_per_step > 0:
            p.eta_seconds = max(0, p.planned_steps - p.step) * samples_per_step / p.images_per_second
    return p


def _samples_per_step(samples: dict, steps: dict) -> float:
    per_rank = [samples[r] / steps[r] for r in samples if steps.get(r)]
    return sum(per_rank) / len(per_rank) if per_rank else 0.0


def _query(url: str, expr: str, timeout: float) -> list:
    endpoint = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        try:
            body = json.load(err)
        except ValueError:
            raise ProgressError(f"Prometheus at {url} answered HTTP {err.code}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ProgressError(f"cannot reach Prometheus at {url}: {reason}") from None
    except ValueError:
        raise ProgressError(f"{url} did not answer like a Prometheus HTTP API") from None
    if body.get("status") != "success":
        raise ProgressError(f"Prometheus rejected a query: {body.get('error', 'unknown error')}")
    return body["data"]["result"]


def _scalar(result: list) -> Optional[float]:
    if not result:
        return None
    return _finite(float(result[0]["value"][1]))


def from_prometheus(url: str, namespace: str, job: str, window: str = "5m", timeout: float = 10.0) -> Progress:
    """Progress of Volcano job `job` in `namespace` from a Prometheus HTTP API at `url` (instant queries; the
    series carry the labels the chart's PodMonitor sets: namespace, job_name)."""
    if not url.startswith(("http://", "https://")):
        raise ProgressError(f"--prometheus URL must start with http:// or https://, got {url!r}")
    sel = f'{M.NAMESPACE}="{namespace}", {M.JOB_NAME}="{job}"'
    q = lambda expr: _scalar(_query(url, expr, timeout))  # noqa: E731
    step = q(f"max({M.GLOBAL_STEP}{{{sel}}})")
    if step is None:
        raise ProgressError(f"Prometheus at {url} has no incv4 metrics for job {job!r} in namespace {namespace!r}")
    p = Progress(step=int(step))
    planned = q(f"max({M.PLANNED_STEPS}{{{sel}}})")
    p.planned_steps = int(planned) if planned is not None else None
    epoch = q(f"max({M.EPOCH}{{{sel}}})")
    p.epoch = int(epoch) if epoch is not None else None
    p.images_per_second = q(f"sum(rate({M.SAMPLES}{{{sel}}}[{window}]))")
    p.loss = q(f'avg({M.LOSS}{{{sel}, {M.RANK}="0"}})')
    if p.loss is None:
        p.loss = q(f"avg({M.LOSS}{{{sel}}})")
    for topk in (M.TOP1, M.TOP5):
        setattr(p, f"top{topk}", q(f'max({M.EVAL_ACCURACY}{{{sel}, {M.TOPK}="{topk}"}})'))
    p.eta_seconds = q(f"(max({M.PLANNED_STEPS}{{{sel}}}) - max({M.GLOBAL_STEP}{{{sel}}}))"
                      f" / avg(rate({M.STEPS}{{{sel}}}[{window}]) > 0)")
    p.last_step_age_seconds = q(f"time() - max({M.LAST_STEP_TIMESTAMP}{{{sel}}})")
    ranks = _query(url, f"count(max by ({M.RANK}) ({M.BUILD_INFO}{{{sel}}}))", timeout)
    p.ranks = int(float(ranks[0]["value"][1])) if ranks else 0
    world = [r["metric"].get(M.WORLD_SIZE, "") for r in _query(
        url, f"max by ({M.WORLD_SIZE}) ({M.BUILD_INFO}{{{sel}}})", timeout)]
    p.world_size = max((int(w) for w in world if w.isdigit()), default=None)
    p.samples_total = q(f"sum({M.SAMPLES}{{{sel}}})") or 0.0
    return p
