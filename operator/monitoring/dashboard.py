"""The Grafana dashboard of a training run, generated as JSON for the Helm chart to mount.

    python -m incv4.operator.monitoring.dashboard > charts/incv4/files/incv4-dashboard.json

Label scheme the queries assume (the chart's PodMonitor must produce it):
- `namespace` and `pod`: the Prometheus Operator's PodMonitor adds them to every target by default;
- `job_name`: the Volcano job name, relabelled from the pod label `volcano.sh/job-name`:
      relabelings:
      - sourceLabels: [__meta_kubernetes_pod_label_volcano_sh_job_name]
        targetLabel: job_name
  (`job` is Prometheus' own scrape-job label, so the run's name needs a label of its own);
- `rank`: set by the trainer on every worker series (trainer/metrics.py).
NPU panels read Ascend npu-exporter's `npu_chip_info_*` series, which name the pod using a chip in `pod_name`; they
are matched to this run's pods by name only (npu-exporter's own `namespace` label may be renamed `exported_namespace`
depending on how it is scraped).
"""
from __future__ import annotations

import json
import re
import sys

RUN_LABELS = ("namespace", "job_name")
RUN = 'namespace="$namespace", job_name="$job"'
SEL = RUN + ', pod=~"$pod", rank=~"$rank"'
NPU = 'pod_name=~"$pod"'
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


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
    return f"histogram_quantile({q}, sum by ({group}) (rate(incv4_step_duration_seconds_bucket{{{SEL}}}[{RATE}])))"


def _green_then(*steps):
    return [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in steps]


def panels():
    g = _Layout()

    g.row("Progress")
    g.add(stat("Progress", [(f"max(incv4_global_step{{{RUN}}}) / max(incv4_planned_steps{{{RUN}}})", "done")],
               unit="percentunit", decimals=1, description="Global step over the steps the run plans."), 4, 4)
    g.add(stat("Step", [(f"max(incv4_global_step{{{RUN}}})", "step"),
                        (f"max(incv4_planned_steps{{{RUN}}})", "planned")]), 4, 4)
    g.add(stat("Epoch", [(f"max(incv4_epoch{{{RUN}}})", "epoch")]), 2, 4)
    g.add(stat("ETA", [(f"(max(incv4_planned_steps{{{RUN}}}) - max(incv4_global_step{{{RUN}}}))"
                        f" / avg(rate(incv4_steps_total{{{RUN}}}[5m]))", "eta")],
               unit="s", description="Remaining steps at the last 5 minutes' step rate."), 3, 4)
    g.add(stat("Images/s", [(f"sum(rate(incv4_samples_total{{{RUN}}}[5m]))", "img/s")], decimals=1,
               description="All ranks together, last 5 minutes."), 3, 4)
    g.add(stat("Accuracy", [(f"max by (topk) (incv4_eval_accuracy_ratio{{{RUN}}})", "top-{{topk}}")],
               unit="percentunit", decimals=2, description="Last validation: top-1 and top-5."), 4, 4)
    g.add(stat("Since last step", [(f"time() - max(incv4_last_step_timestamp_seconds{{{RUN}}})", "age")],
               unit="s", thresholds=_green_then((300, "orange"), (600, "red")),
               description="Heartbeat: seconds since any rank finished a step."), 2, 4)
    g.add(stat("Checkpoint age",
               [(f"time() - max(incv4_checkpoint_last_success_timestamp_seconds{{{RUN}}})", "age")],
               unit="s", thresholds=_green_then((3600, "orange"), (7200, "red")),
               description="Seconds since the last successful checkpoint."), 2, 4)
    g.add(stat("Graph compile", [(f"max(incv4_graph_compile_seconds{{{RUN}}})", "compile")], unit="s",
               description="Graph build and compile before the first step (slowest rank)."), 4, 4)
    g.add({"type": "table", "title": "Run", "datasource": DS, "description": "What the ranks run.",
           "targets": [dict(t, format="table", instant=True) for t in _targets([(
               f"count by (model, mindspore_version, world_size, batch_size, recipe) (incv4_build_info{{{RUN}}})",
               "")])],
           "fieldConfig": {"defaults": {}, "overrides": []},
           "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                              "renameByName": {"Value": "ranks"}}}]}, 20, 4)

    g.row("Speed")
    g.add(timeseries("Step time", [(_quantile(0.5), "p50"), (_quantile(0.9), "p90"), (_quantile(0.99), "p99"),
                                   (f"sum(rate(incv4_step_duration_seconds_sum{{{SEL}}}[{RATE}]))"
                                    f" / sum(rate(incv4_step_duration_seconds_count{{{SEL}}}[{RATE}]))", "mean")],
                     unit="s", description="Seconds per step over the selected ranks "
                                           "(input wait excluded: see data-wait share)."), 8, 8)
    g.add(timeseries("Step time p90 by rank (stragglers)", [(_quantile(0.9, by="rank"), "rank {{rank}}")],
                     unit="s", description="With a synchronous all-reduce a slow rank slows all of them; "
                                           "compare data-wait per rank too."), 8, 8)
    g.add(timeseries("Throughput", [(f"sum(rate(incv4_samples_total{{{SEL}}}[{RATE}]))", "all ranks"),
                                    (f"sum by (pod) (rate(incv4_samples_total{{{SEL}}}[{RATE}]))", "{{pod}}")],
                     unit="none", description="Training images per second."), 8, 8)
    wait = f"sum by (rank) (rate(incv4_data_wait_seconds_total{{{SEL}}}[{RATE}]))"
    compute = f"sum by (rank) (rate(incv4_step_duration_seconds_sum{{{SEL}}}[{RATE}]))"
    g.add(timeseries("Data-wait share by rank", [(f"{wait} / ({wait} + {compute})", "rank {{rank}}")],
        unit="percentunit", description="Share of step time spent waiting for input: high means input bound."),
        12, 8)
    g.add(timeseries("Steps per second by rank",
                     [(f"sum by (rank) (rate(incv4_steps_total{{{SEL}}}[{RATE}]))", "rank {{rank}}")]), 12, 8)

    g.row("Quality")
    g.add(timeseries("Loss", [(f"max by (rank) (incv4_loss{{{SEL}}})", "rank {{rank}}")]), 8, 8)
    g.add(timeseries("Learning rate", [(f"max(incv4_learning_rate{{{SEL}}})", "lr")]), 8, 8)
    g.add(timeseries("Validation accuracy", [(f"max by (topk) (incv4_eval_accuracy_ratio{{{SEL}}})",
                                              "top-{{topk}}")], unit="percentunit"), 8, 8)
    g.add(timeseries("Non-finite losses", [(
        f"sum by (rank) (increase(incv4_nonfinite_loss_steps_total{{{SEL}}}[{RATE}]))", "rank {{rank}}")],
        description="Steps skipped for a NaN/inf loss; too many in a row end the run as DIVERGED."), 8, 8)
    g.add(timeseries("Checkpoint duration (mean)", [(
        f"max(incv4_checkpoint_duration_seconds_sum{{{SEL}}} / incv4_checkpoint_duration_seconds_count{{{SEL}}})",
        "seconds")], unit="s"), 8, 8)
    g.add(timeseries("Checkpoint failures", [(
        f"sum by (rank) (incv4_checkpoint_failures_total{{{SEL}}})", "rank {{rank}}")]), 8, 8)

    g.row("NPUs (Ascend npu-exporter)")
    g.add(timeseries("NPU utilization", [(f"npu_chip_info_utilization{{{NPU}}}", "{{pod_name}} npu {{id}}")],
                     unit="percent"), 8, 8)
    g.add(timeseries("HBM used", [(f"npu_chip_info_hbm_used_memory{{{NPU}}}", "{{pod_name}} npu {{id}}")],
                     unit="decmbytes"), 8, 8)
    g.add(timeseries("NPU health (1 = healthy)", [(
        f"min by (pod_name, id) (npu_chip_info_health_status{{{NPU}}})", "{{pod_name}} npu {{id}}")]), 8, 8)
    g.add(timeseries("NPU temperature", [(f"npu_chip_info_temperature{{{NPU}}}", "{{pod_name}} npu {{id}}")],
                     unit="celsius"), 12, 8)
    g.add(timeseries("NPU power", [(f"npu_chip_info_power{{{NPU}}}", "{{pod_name}} npu {{id}}")],
                     unit="watt"), 12, 8)

    g.row("Restarts")
    g.add(timeseries("Worker restarts (launcher)", [(
        f"sum by (rank) (incv4_worker_restarts_total{{{SEL}}})", "rank {{rank}}")],
        description="Restarts of worker processes inside each pod since the pod started."), 8, 8)
    g.add(timeseries("Worker exits by reason", [(
        f"sum by (reason) (incv4_worker_exits_total{{{SEL}}})", "{{reason}}")],
        description="ok, failure (retryable), usage/diverged (permanent), peer_timeout, terminated, signal."), 8, 8)
    g.add(timeseries("Pod container restarts (kube-state-metrics)", [(
        'sum by (pod) (kube_pod_container_status_restarts_total{namespace="$namespace", pod=~"$pod"})', "{{pod}}")]),
        8, 8)
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
            # label_values over incv4_build_info: every run that reported within the time range stays listed,
            # finished ones included.
            _query_var("namespace", "Namespace", "label_values(incv4_build_info, namespace)"),
            _query_var("job", "Job", 'label_values(incv4_build_info{namespace="$namespace"}, job_name)'),
            _query_var("pod", "Pod", f"label_values(incv4_build_info{{{RUN}}}, pod)", multi=True),
            _query_var("rank", "Rank", f'label_values(incv4_build_info{{{RUN}, pod=~"$pod"}}, rank)', multi=True),
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
