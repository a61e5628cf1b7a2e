"""Recording rules: what the dashboard would otherwise compute from every rank's raw series at every refresh.

At 1,024 ranks (128 pods x 8) a panel over raw series reads tens of thousands of series per point (the step-time
histogram alone is 22 buckets per rank); Prometheus evaluates these rules once per evaluation interval instead, and
the panels read their results: one series per run, pod or rank (bench/ case `monitoring` measures both ways). They
go into the chart's rule file beside the alerts (operator/monitoring/alerts.py), as their own group.

Names follow Prometheus' `level:metric:operations` convention (https://prometheus.io/docs/practices/rules/): the
level says which labels are kept: `job` the run's only (namespace, job_name), `pod` and `rank` those too. The rate
window, 2 minutes, is four of the chart's 30 s scrapes (charts/incv4/values.yaml monitoring.podMonitor.interval),
the least a rate needs to see two samples after a missed scrape.

`Recorded.over(selector)` gives the panel's query: the recorded series, or with `recorded=False` the same
expression over the raw series (for a Prometheus that does not run these rules, and the bench's reference)."""
from __future__ import annotations

from dataclasses import dataclass

from incv4.trainer import contract as M

WINDOW = "2m"
RUN = ", ".join(M.RUN_LABELS)
POD_LEVEL = f"{RUN}, {M.POD}"
RANK_LEVEL = f"{RUN}, {M.POD}, {M.RANK}"


@dataclass(frozen=True)
class Recorded:
    """One recording rule. `template` is PromQL whose raw selectors end in `{sel}`: empty in the rule (every
    series), a panel's label matchers in the raw form of a query."""

    record: str
    template: str

    @property
    def expr(self) -> str:
        return self.template.replace("{sel}", "")

    def over(self, selector: str, recorded: bool = True) -> str:
        if recorded:
            return f"{self.record}{{{selector}}}"
        return "(" + self.template.replace("{sel}", "{" + selector + "}") + ")"


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{sel}}[{WINDOW}]))"


# The run's whole step-time histogram: 22 series per run. Per pod it would be 22 x 128 at 1,024 ranks, and a
# quantile over those per point of a panel is what made the panel slow.
STEP_BUCKETS = Recorded(f"job:{M.STEP_DURATION.bucket}:rate{WINDOW}", _rate(M.STEP_DURATION.bucket, f"{RUN}, le"))
STEP_SECONDS = Recorded(f"pod:{M.STEP_DURATION.sum}:rate{WINDOW}", _rate(M.STEP_DURATION.sum, POD_LEVEL))
STEP_COUNT = Recorded(f"pod:{M.STEP_DURATION.count}:rate{WINDOW}", _rate(M.STEP_DURATION.count, POD_LEVEL))
SAMPLES = Recorded(f"pod:{M.SAMPLES}:rate{WINDOW}", _rate(M.SAMPLES.name, POD_LEVEL))
RANK_STEPS = Recorded(f"rank:{M.STEPS}:rate{WINDOW}", _rate(M.STEPS.name, RANK_LEVEL))
RANK_STEP_P90 = Recorded(f"rank:{M.STEP_DURATION}:p90_rate{WINDOW}",
                         f"histogram_quantile(0.9, {_rate(M.STEP_DURATION.bucket, f'{RANK_LEVEL}, le')})")
_WAIT = _rate(M.DATA_WAIT.name, RANK_LEVEL)
RANK_DATA_WAIT_SHARE = Recorded(f"rank:{M.DATA_WAIT}:ratio_rate{WINDOW}",
                                f"{_WAIT} / ({_WAIT} + {_rate(M.STEP_DURATION.sum, RANK_LEVEL)})")
POD_EXITS = Recorded(f"pod:{M.WORKER_EXITS}:sum", f"sum by ({POD_LEVEL}, {M.REASON}) ({M.WORKER_EXITS}{{sel}})")
POD_RESTARTS = Recorded(f"pod:{M.WORKER_RESTARTS}:sum", f"sum by ({POD_LEVEL}) ({M.WORKER_RESTARTS}{{sel}})")
POD_CHECKPOINT_FAILURES = Recorded(f"pod:{M.CHECKPOINT_FAILURES}:sum",
                                   f"sum by ({POD_LEVEL}) ({M.CHECKPOINT_FAILURES}{{sel}})")
POD_NONFINITE = Recorded(f"pod:{M.NONFINITE_LOSS_STEPS}:increase{WINDOW}",
                         f"sum by ({POD_LEVEL}) (increase({M.NONFINITE_LOSS_STEPS}{{sel}}[{WINDOW}]))")
# the ranks that never saved a checkpoint have 0/0 = NaN, which max ignores
POD_CHECKPOINT_MEAN = Recorded(f"pod:{M.CHECKPOINT_DURATION}:mean", f"max by ({POD_LEVEL}) "
                               f"({M.CHECKPOINT_DURATION.sum}{{sel}} / {M.CHECKPOINT_DURATION.count}{{sel}})")
POD_ACCURACY = Recorded(f"pod:{M.EVAL_ACCURACY}:max", f"max by ({POD_LEVEL}, {M.TOPK}) ({M.EVAL_ACCURACY}{{sel}})")

RULES = (STEP_BUCKETS, STEP_SECONDS, STEP_COUNT, SAMPLES, RANK_STEPS, RANK_STEP_P90, RANK_DATA_WAIT_SHARE, POD_EXITS,
         POD_RESTARTS, POD_CHECKPOINT_FAILURES, POD_NONFINITE, POD_CHECKPOINT_MEAN, POD_ACCURACY)


def group() -> dict:
    """The rule group for the chart's rule file."""
    return {"name": "incv4-recording", "rules": [{"record": r.record, "expr": r.expr} for r in RULES]}
