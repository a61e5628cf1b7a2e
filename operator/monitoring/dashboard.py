"""The Grafana dashboard of a training run, generated as JSON for the Helm chart to mount.

    python -m incv4.operator.monitoring.dashboard > charts/incv4/files/incv4-dashboard.json

Metric and label names come from incv4.trainer.contract. The queries select a run by the labels the chart's
PodMonitor puts on every series (contract.RUN_LABELS: `namespace`, added by the Prometheus Operator, and `job_name`,
relabelled from the pod label volcano.sh/job-name) and narrow it by `pod` and the trainer's `rank`. NPU panels read
Ascend npu-exporter's series (operator/monitoring/exporters.py), matched to the run's pods by pod name.
"""
from __future__ import annotations

import json
import re
import sys

from incv4.operator.monitoring import exporters as X
from incv4.trainer import contract as M

RUN = f'{M.NAMESPACE}="$namespace", {M.JOB_NAME}="$job"'
SEL = f'{RUN}, {M.POD}=~"$pod", {M.RANK}=~"$rank"'
NPU = f'{X.NPU_POD}=~"$pod"'
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


def _show(label: str) -> str:
    """A label's value in a legend."""
    return "{{" + label + "}}"


RANK_LEGEND = f"rank {_show(M.RANK)}"
TOPK_LEGEND = f"top-{_show(M.TOPK)}"
CHIP_LEGEND = f"{_show(X.NPU_POD)} npu {_show(X.NPU_ID)}"


class _Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self):
        self.x = self.y = 0
        self.row_height = 0
        self.next_id = 1
        self.panels = []

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = self._id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(panel)


def _targets(queries):
    return [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(queries)]


def stat(title, queries, unit="none", description="", decimals=None, thresholds=None):
    defaults = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": _targets(queries), "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": "auto"}}


def timeseries(title, queries, unit="none", description=""):
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": _targets(queries), "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}}}


def _quantile(q, by=""):
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({M.STEP_DURATION.bucket}{{{SEL}}}[{RATE}])))"


def _green_then(*steps):
    return [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in steps]


def _progress_row():
    return [
        (stat("Progress", [(f"max({M.GLOBAL_STEP}{{{RUN}}}) / max({M.PLANNED_STEPS}{{{RUN}}})", "done")],
              unit="percentunit", decimals=1, description="Global step over the steps the run plans."), 4, 4),
        (stat("Step", [(f"max({M.GLOBAL_STEP}{{{RUN}}})", "step"),
                       (f"max({M.PLANNED_STEPS}{{{RUN}}})", "planned")]), 4, 4),
        (stat("Epoch", [(f"max({M.EPOCH}{{{RUN}}})", "epoch")]), 2, 4),
        (stat("ETA", [(f"(max({M.PLANNED_STEPS}{{{RUN}}}) - max({M.GLOBAL_STEP}{{{RUN}}}))"
                       f" / avg(rate({M.STEPS}{{{RUN}}}[5m]))", "eta")],
              unit="s", description="Remaining steps at the last 5 minutes' step rate."), 3, 4),
        (stat("Images/s", [(f"sum(rate({M.SAMPLES}{{{RUN}}}[5m]))", "img/s")], decimals=1,
              description="All ranks together, last 5 minutes."), 3, 4),
        (stat("Accuracy", [(f"max by ({M.TOPK}) ({M.EVAL_ACCURACY}{{{RUN}}})", TOPK_LEGEND)],
              unit="percentunit", decimals=2, description="Last validation: top-1 and top-5."), 4, 4),
        (stat("Since last step", [(f"time() - max({M.LAST_STEP_TIMESTAMP}{{{RUN}}})", "age")],
              unit="s", thresholds=_green_then((300, "orange"), (600, "red")),
              description="Heartbeat: seconds since any rank finished a step."), 2, 4),
        (stat("Checkpoint age", [(f"time() - max({M.CHECKPOINT_LAST_SUCCESS}{{{RUN}}})", "age")],
              unit="s", thresholds=_green_then((3600, "orange"), (7200, "red")),
              description="Seconds since the last successful checkpoint."), 2, 4),
        (stat("Graph compile", [(f"max({M.GRAPH_COMPILE}{{{RUN}}})", "compile")], unit="s",
              description="Graph build and compile before the first step (slowest rank)."), 4, 4),
        ({"type": "table", "title": "Run", "datasource": DS, "description": "What the ranks run.",
          "targets": [dict(t, format="table", instant=True) for t in _targets([(
              f"count by ({', '.join(M.BUILD_INFO_LABELS)}) ({M.BUILD_INFO}{{{RUN}}})", "")])],
          "fieldConfig": {"defaults": {}, "overrides": []},
          "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                             "renameByName": {"Value": "ranks"}}}]}, 20, 4),
    ]


def _speed_row():
    mean = (f"sum(rate({M.STEP_DURATION.sum}{{{SEL}}}[{RATE}]))"
            f" / sum(rate({M.STEP_DURATION.count}{{{SEL}}}[{RATE}]))")
    wait = f"sum by ({M.RANK}) (rate({M.DATA_WAIT}{{{SEL}}}[{RATE}]))"
    compute = f"sum by ({M.RANK}) (rate({M.STEP_DURATION.sum}{{{SEL}}}[{RATE}]))"
    return [
        (timeseries("Step time", [(_quantile(0.5), "p50"), (_quantile(0.9), "p90"), (_quantile(0.99), "p99"),
                                  (mean, "mean")],
                    unit="s", description="Seconds per step over the selected ranks "
                                          "(input wait excluded: see data-wait share)."), 8, 8),
        (timeseries("Step time p90 by rank (stragglers)", [(_quantile(0.9, by=M.RANK), RANK_LEGEND)],
                    unit="s", description="With a synchronous all-reduce a slow rank slows all of them; "
                                          "compare data-wait per rank too."), 8, 8),
        (timeseries("Throughput", [(f"sum(rate({M.SAMPLES}{{{SEL}}}[{RATE}]))", "all ranks"),
                                   (f"sum by ({M.POD}) (rate({M.SAMPLES}{{{SEL}}}[{RATE}]))", _show(M.POD))],
                    unit="none", description="Training images per second."), 8, 8),
        (timeseries("Data-wait share by rank", [(f"{wait} / ({wait} + {compute})", RANK_LEGEND)], unit="percentunit",
                    description="Share of step time spent waiting for input: high means input bound."), 12, 8),
        (timeseries("Steps per second by rank",
                    [(f"sum by ({M.RANK}) (rate({M.STEPS}{{{SEL}}}[{RATE}]))", RANK_LEGEND)]), 12, 8),
    ]


def _quality_row():
    checkpoint_mean = f"max({M.CHECKPOINT_DURATION.sum}{{{SEL}}} / {M.CHECKPOINT_DURATION.count}{{{SEL}}})"
    return [
        (timeseries("Loss", [(f"max by ({M.RANK}) ({M.LOSS}{{{SEL}}})", RANK_LEGEND)]), 8, 8),
        (timeseries("Learning rate", [(f"max({M.LEARNING_RATE}{{{SEL}}})", "lr")]), 8, 8),
        (timeseries("Validation accuracy", [(f"max by ({M.TOPK}) ({M.EVAL_ACCURACY}{{{SEL}}})", TOPK_LEGEND)],
                    unit="percentunit"), 8, 8),
        (timeseries("Non-finite losses", [(
            f"sum by ({M.RANK}) (increase({M.NONFINITE_LOSS_STEPS}{{{SEL}}}[{RATE}]))", RANK_LEGEND)],
            description="Steps skipped for a NaN/inf loss; too many in a row end the run as DIVERGED."), 8, 8),
        (timeseries("Checkpoint duration (mean)", [(checkpoint_mean, "seconds")], unit="s"), 8, 8),
        (timeseries("Checkpoint failures", [(
            f"sum by ({M.RANK}) ({M.CHECKPOINT_FAILURES}{{{SEL}}})", RANK_LEGEND)]), 8, 8),
    ]


def _npu_row():
    return [
        (timeseries("NPU utilization", [(f"{X.NPU_UTILIZATION}{{{NPU}}}", CHIP_LEGEND)], unit="percent"), 8, 8),
        (timeseries("HBM used", [(f"{X.NPU_HBM_USED}{{{NPU}}}", CHIP_LEGEND)], unit="decmbytes"), 8, 8),
        (timeseries("NPU health (1 = healthy)", [(
            f"min by ({X.NPU_POD}, {X.NPU_ID}) ({X.NPU_HEALTH}{{{NPU}}})", CHIP_LEGEND)]), 8, 8),
        (timeseries("NPU temperature", [(f"{X.NPU_TEMPERATURE}{{{NPU}}}", CHIP_LEGEND)], unit="celsius"), 12, 8),
        (timeseries("NPU power", [(f"{X.NPU_POWER}{{{NPU}}}", CHIP_LEGEND)], unit="watt"), 12, 8),
    ]


def _restarts_row():
    reasons = (f"{M.EXIT_REASONS[M.OK]}, {M.EXIT_REASONS[M.FAILURE]} (retryable), "
               f"{M.EXIT_REASONS[M.USAGE]}/{M.EXIT_REASONS[M.DIVERGED]} (permanent), "
               f"{M.EXIT_REASONS[M.PEER_TIMEOUT]}, {M.EXIT_REASONS[M.TERMINATED]}, {M.SIGNAL_REASON}.")
    return [
        (timeseries("Worker restarts (launcher)", [(
            f"sum by ({M.RANK}) ({M.WORKER_RESTARTS}{{{SEL}}})", RANK_LEGEND)],
            description="Restarts of worker processes inside each pod since the pod started."), 8, 8),
        (timeseries("Worker exits by reason", [(
            f"sum by ({M.REASON}) ({M.WORKER_EXITS}{{{SEL}}})", _show(M.REASON))], description=reasons), 8, 8),
        (timeseries("Pod container restarts (kube-state-metrics)", [(
            f'sum by ({M.POD}) ({X.CONTAINER_RESTARTS}{{{M.NAMESPACE}="$namespace", {M.POD}=~"$pod"}})',
            _show(M.POD))]), 8, 8),
    ]


def panels():
    """Every panel, row by row, placed on Grafana's grid."""
    g = _Layout()
    for title, row in (("Progress", _progress_row()), ("Speed", _speed_row()), ("Quality", _quality_row()),
                       ("NPUs (Ascend npu-exporter)", _npu_row()), ("Restarts", _restarts_row())):
        g.row(title)
        for panel, w, h in row:
            g.add(panel, w, h)
    return g.panels


def _query_var(name, label, query, multi=False):
    var = {"type": "query", "name": name, "label": label, "datasource": DS,
           "definition": query, "query": {"query": query, "refId": f"{name}-var"},
           "refresh": 2, "sort": 1, "includeAll": multi, "multi": multi,
           "current": {}, "options": [], "hide": 0}
    return var


def build() -> dict:
    """The dashboard as a mapping."""
    return {
        "uid": "incv4-training",
        "title": "incv4 training",
        "description": "InceptionV4 training runs (incv4): progress, speed, quality, NPUs, restarts.",
        "tags": ["incv4", "training", "ascend"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            # label_values over the build info: every run that reported within the time range stays listed,
            # finished ones included.
            _query_var("namespace", "Namespace", f"label_values({M.BUILD_INFO}, {M.NAMESPACE})"),
            _query_var("job", "Job", f'label_values({M.BUILD_INFO}{{{M.NAMESPACE}="$namespace"}}, {M.JOB_NAME})'),
            _query_var("pod", "Pod", f"label_values({M.BUILD_INFO}{{{RUN}}}, {M.POD})", multi=True),
            _query_var("rank", "Rank", f'label_values({M.BUILD_INFO}{{{RUN}, {M.POD}=~"$pod"}}, {M.RANK})',
                       multi=True),
        ]},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def expressions(dashboard: dict) -> list:
    """Every PromQL expression of the dashboard's panels."""
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def variable_queries(dashboard: dict) -> list:
    """(variable name, label, series selector) of each `label_values(selector, label)` variable."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
            out.append((var["name"], m.group(2), m.group(1)))
    return out


def fill_variables(expr: str, namespace: str, job: str, pod: str = ".+", rank: str = ".+",
                   rate_interval: str = "1m") -> str:
    """An expression with the dashboard's variables filled in, as Grafana would send it."""
    values = {"namespace": namespace, "job": job, "pod": pod, "rank": rank, "__rate_interval": rate_interval}
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)


def main(argv=None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
