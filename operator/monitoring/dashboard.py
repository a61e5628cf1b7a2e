"""The Grafana dashboard of a training run, generated as JSON for the Helm chart to mount.

    python -m incv4.operator.monitoring.dashboard > charts/incv4/files/incv4-dashboard.json

Metric and label names come from incv4.trainer.contract. The queries select a run by the labels the chart's
PodMonitor puts on every series (contract.RUN_LABELS: `namespace`, added by the Prometheus Operator, and `job_name`,
relabelled from the pod label volcano.sh/job-name) and narrow it by `pod` and the trainer's `rank`. NPU panels read
Ascend npu-exporter's series (operator/monitoring/exporters.py), matched to the run's pods by pod name.

Built with grafana-foundation-sdk (Grafana's typed builders; a dev dependency, since the JSON is committed): it is
imported only where the dashboard is built, so `expressions`/`fill_variables` over a built dashboard need only the
standard library. tests/unit/monitoring/test_dashboard.py validates the output against Grafana's dashboard schema
(tests/support/grafana_schema/).
"""
from __future__ import annotations

import json
import re
import sys
import warnings

from incv4.operator.monitoring import exporters as X
from incv4.operator.monitoring import recording as R
from incv4.trainer import contract as M

RUN = f'{M.NAMESPACE}="$namespace", {M.JOB_NAME}="$job"'
POD_SEL = f'{RUN}, {M.POD}=~"$pod"'
SEL = f'{POD_SEL}, {M.RANK}=~"$rank"'
NPU = f'{X.NPU_POD}=~"$pod"'
RATE = "$__rate_interval"
TOP = 10   # panels that would draw a line per rank, pod or chip draw the ones that stand out
# A point per minute at most: the resolution of the recording rules (and twice the chart's 30 s scrape); at 1,024
# ranks every point of a panel costs a pass over its series.
MIN_INTERVAL = "1m"


def _show(label: str) -> str:
    """A label's value in a legend."""
    return "{{" + label + "}}"


RANK_LEGEND = f"rank {_show(M.RANK)}"
TOPK_LEGEND = f"top-{_show(M.TOPK)}"
CHIP_LEGEND = f"{_show(X.NPU_POD)} npu {_show(X.NPU_ID)}"


def _datasource():
    from grafana_foundation_sdk.models.common import DataSourceRef
    return DataSourceRef(type_val="prometheus", uid="${datasource}")


def _targets(queries, table=False, instant=False):
    """Prometheus queries of a panel, refIds A, B, ...; `table`: instant queries shown as a table; `instant`: the
    value at the range's end only."""
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat
    out = []
    for i, (expr, legend) in enumerate(queries):
        query = prometheus.Dataquery().datasource(_datasource()).expr(expr).legend_format(legend)
        query = query.ref_id(chr(ord("A") + i))
        if table:
            query = query.format(PromQueryFormat.TABLE)
        out.append(query.instant() if table or instant else query)
    return out


def _thresholds(steps):
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


def stat(title, queries, unit="none", description="", decimals=None, thresholds=None):
    from grafana_foundation_sdk.builders import common as options
    from grafana_foundation_sdk.builders import stat as sdk_stat
    from grafana_foundation_sdk.models.common import BigValueColorMode, BigValueGraphMode, BigValueTextMode
    panel = (sdk_stat.Panel().title(title).description(description).datasource(_datasource())
             .targets(_targets(queries, instant=True)).unit(unit)
             .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
             .color_mode(BigValueColorMode.VALUE).graph_mode(BigValueGraphMode.NONE)
             .text_mode(BigValueTextMode.AUTO))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel.thresholds(_thresholds(thresholds)) if thresholds else panel


def timeseries(title, queries, unit="none", description=""):
    from grafana_foundation_sdk.builders import common as options
    from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode
    return (sdk_timeseries.Panel().title(title).description(description).datasource(_datasource())
            .targets(_targets(queries)).unit(unit).interval(MIN_INTERVAL)
            .legend(options.VizLegendOptions().display_mode(LegendDisplayMode.LIST)
                    .placement(LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(options.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.NONE)))


def table(title, query, description=""):
    from grafana_foundation_sdk.builders import table as sdk_table
    from grafana_foundation_sdk.models.dashboard import DataTransformerConfig
    organize = DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True},
                                                                 "renameByName": {"Value": "ranks"}})
    return (sdk_table.Panel().title(title).description(description).datasource(_datasource())
            .targets(_targets([(query, "")], table=True)).with_transformation(organize))


def _green_then(*steps):
    return [(None, "green")] + list(steps)


def _progress_row(recorded):
    """Stat panels read instant queries: one evaluation, not one per point of the time range."""
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
        (table("Run", f"count by ({', '.join(M.BUILD_INFO_LABELS)}) ({M.BUILD_INFO}{{{RUN}}})",
               description="What the ranks run."), 20, 4),
    ]


def _speed_row(recorded):
    """Read the recording rules (operator/monitoring/recording.py): one series per pod or rank, not per bucket."""
    buckets = f"sum by (le) ({R.STEP_BUCKETS.over(RUN, recorded)})"
    mean = f"sum({R.STEP_SECONDS.over(RUN, recorded)}) / sum({R.STEP_COUNT.over(RUN, recorded)})"
    samples = R.SAMPLES.over(POD_SEL, recorded)
    return [
        (timeseries("Step time", [(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}")
                                  for q in (0.5, 0.9, 0.99)] + [(mean, "mean")],
                    unit="s", description="Seconds per step over all ranks of the run (input wait excluded: see "
                                          "data-wait share), last 2 minutes; per rank: the stragglers panel."), 8, 8),
        (timeseries("Step time p90 by rank (stragglers)", [(f"topk({TOP}, {R.RANK_STEP_P90.over(SEL, recorded)})",
                                                            RANK_LEGEND)],
                    unit="s", description=f"The {TOP} ranks with the slowest p90 step time. With a synchronous "
                                          "all-reduce a slow rank slows all of them; compare data-wait per rank "
                                          "too."), 8, 8),
        (timeseries("Throughput", [(f"sum({samples})", "all ranks"),
                                   (f"bottomk({TOP}, sum by ({M.POD}) ({samples}))", _show(M.POD))],
                    unit="none", description=f"Training images per second: the selected pods together, and the "
                                             f"{TOP} slowest pods."), 8, 8),
        (timeseries("Data-wait share by rank", [(f"topk({TOP}, {R.RANK_DATA_WAIT_SHARE.over(SEL, recorded)})",
                                                 RANK_LEGEND)], unit="percentunit",
                    description=f"Share of step time spent waiting for input, the {TOP} highest ranks: high means "
                                f"input bound."), 12, 8),
        (timeseries("Steps per second by rank", [(f"bottomk({TOP}, {R.RANK_STEPS.over(SEL, recorded)})",
                                                  RANK_LEGEND)],
                    description=f"The {TOP} slowest ranks."), 12, 8),
    ]


def _quality_row(recorded):
    return [
        (timeseries("Loss", [(f"{how}({M.LOSS}{{{SEL}}})", how) for how in ("min", "avg", "max")],
                    description="Training loss of the last step over the selected ranks (each rank's own "
                                "batch)."), 8, 8),
        (timeseries("Learning rate", [(f"max({M.LEARNING_RATE}{{{SEL}}})", "lr")]), 8, 8),
        (timeseries("Validation accuracy", [(f"max by ({M.TOPK}) ({R.POD_ACCURACY.over(POD_SEL, recorded)})",
                                             TOPK_LEGEND)], unit="percentunit"), 8, 8),
        (timeseries("Non-finite losses", [(f"topk({TOP}, {R.POD_NONFINITE.over(POD_SEL, recorded)})", _show(M.POD))],
                    description=f"Steps skipped for a NaN/inf loss in the last 2 minutes, the {TOP} pods with most "
                                "(the alert names the rank); too many in a row end the run as DIVERGED."), 8, 8),
        (timeseries("Checkpoint duration (mean)", [(f"max({R.POD_CHECKPOINT_MEAN.over(POD_SEL, recorded)})",
                                                    "seconds")], unit="s"), 8, 8),
        (timeseries("Checkpoint failures", [(f"topk({TOP}, {R.POD_CHECKPOINT_FAILURES.over(POD_SEL, recorded)})",
                                             _show(M.POD))],
                    description=f"The {TOP} pods with most (the alert names the rank)."), 8, 8),
    ]


def _npu_row(recorded):
    """Aggregates over the selected pods' chips (one line per chip is unreadable at 1,024 chips), and the chips
    that stand out."""
    def spread(metric, *hows):
        return [(f"{how}({metric}{{{NPU}}})", how) for how in hows]
    return [
        # no bottomk line here: utilization moves every scrape, so over 6 h the 10 least busy chips are all of them
        (timeseries("NPU utilization", spread(X.NPU_UTILIZATION, "min", "avg"), unit="percent",
                    description="Over the selected pods' chips."), 8, 8),
        (timeseries("HBM used", spread(X.NPU_HBM_USED, "avg", "max"), unit="decmbytes"), 8, 8),
        (timeseries("NPU health (1 = healthy)", spread(X.NPU_HEALTH, "min") + [
            (f"bottomk({TOP}, {X.NPU_HEALTH}{{{NPU}}})", CHIP_LEGEND)],
            description=f"The least healthy chip of the selected pods, and the {TOP} chips with the lowest "
                        "health."), 8, 8),
        (timeseries("NPU temperature", spread(X.NPU_TEMPERATURE, "avg", "max"), unit="celsius"), 12, 8),
        (timeseries("NPU power", spread(X.NPU_POWER, "avg", "max"), unit="watt",
                    description="Per chip: mean and highest."), 12, 8),
    ]


def _restarts_row(recorded):
    reasons = (f"{M.EXIT_REASONS[M.OK]}, {M.EXIT_REASONS[M.FAILURE]} (retryable), "
               f"{M.EXIT_REASONS[M.USAGE]}/{M.EXIT_REASONS[M.DIVERGED]} (permanent), "
               f"{M.EXIT_REASONS[M.PEER_TIMEOUT]}, {M.EXIT_REASONS[M.TERMINATED]}, {M.SIGNAL_REASON}.")
    return [
        (timeseries("Worker restarts (launcher)", [(f"topk({TOP}, {R.POD_RESTARTS.over(POD_SEL, recorded)})",
                                                     _show(M.POD))],
                    description=f"Restarts of worker processes inside each pod since the pod started, the {TOP} pods "
                                "with most (the alert names the rank)."), 8, 8),
        (timeseries("Worker exits by reason", [(
            f"sum by ({M.REASON}) ({R.POD_EXITS.over(POD_SEL, recorded)})", _show(M.REASON))],
            description=reasons), 8, 8),
        (timeseries("Pod container restarts (kube-state-metrics)", [(
            f'topk({TOP}, sum by ({M.POD}) ({X.CONTAINER_RESTARTS}{{{M.NAMESPACE}="$namespace", {M.POD}=~"$pod"}}))',
            _show(M.POD))], description=f"The {TOP} pods with most."), 8, 8),
    ]


ROWS = (("Progress", _progress_row), ("Speed", _speed_row), ("Quality", _quality_row),
        ("NPUs (Ascend npu-exporter)", _npu_row), ("Restarts", _restarts_row))


def _query_var(name, label, query, multi=False):
    from grafana_foundation_sdk.builders.dashboard import QueryVariable
    from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort
    return (QueryVariable(name).label(label).datasource(_datasource()).definition(query)
            .query(query).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC).include_all(multi).multi(multi))


def _variables():
    from grafana_foundation_sdk.builders.dashboard import DatasourceVariable
    return [
        DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # label_values over the build info: every run that reported within the time range stays listed,
        # finished ones included.
        _query_var("namespace", "Namespace", f"label_values({M.BUILD_INFO}, {M.NAMESPACE})"),
        _query_var("job", "Job", f'label_values({M.BUILD_INFO}{{{M.NAMESPACE}="$namespace"}}, {M.JOB_NAME})'),
        _query_var("pod", "Pod", f"label_values({M.BUILD_INFO}{{{RUN}}}, {M.POD})", multi=True),
        _query_var("rank", "Rank", f'label_values({M.BUILD_INFO}{{{RUN}, {M.POD}=~"$pod"}}, {M.RANK})',
                   multi=True),
    ]


def builder(recorded: bool = True):
    """The dashboard as grafana-foundation-sdk's builder: rows of panels the SDK places on the 24-column grid.
    `recorded=False`: the panels that read recording rules compute the same from the raw series instead."""
    from grafana_foundation_sdk.builders import dashboard as sdk
    from grafana_foundation_sdk.models.common import DataSourceRef
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync
    annotations = (sdk.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
                   .type("dashboard").datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --")))
    board = (sdk.Dashboard("incv4 training").uid("incv4-training").version(1).editable()
             .description("InceptionV4 training runs (incv4): progress, speed, quality, NPUs, restarts.")
             .tags(["incv4", "training", "ascend"]).tooltip(DashboardCursorSync.CROSSHAIR)
             .time("now-6h", "now").refresh("30s").variables(_variables())
             .annotation(annotations))
    panel_id = 0
    for title, row in ROWS:
        panel_id += 1
        board = board.with_row(sdk.Row(title).id(panel_id))
        for panel, w, h in row(recorded):
            panel_id += 1
            board = board.with_panel(panel.id(panel_id).span(w).height(h))
    return board


def build(recorded: bool = True) -> dict:
    """The dashboard as a mapping (the SDK's JSON encoding of `builder()`)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    with warnings.catch_warnings():
        # The SDK steers towards its v2 dashboards (Grafana 12's new API, behind feature flags); the chart's
        # sidecar provisions the classic JSON model built here, which Grafana 10-12 all load.
        warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
        return json.loads(JSONEncoder().encode(builder(recorded).build()))


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
