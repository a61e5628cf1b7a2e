"""Case 6, monitoring at 1,024 ranks: every dashboard query and every rule over 24 h of a 128-pod x 8-rank job, on
Debian's real Prometheus (a simulation: no cluster that large exists here). Target: every panel < 200 ms.

The data: 15 s samples of every series such a job puts in Prometheus, written as OpenMetrics one 2 h block at a
time and turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`; the recording rules get the
same history from `promtool tsdb create-blocks-from rules` (tests/support/prometheus_server.py has both helpers).
The series of one pod are not invented here: a subprocess runs incv4's own exporter (trainer/metrics/exporter.py,
multiprocess mode as in a pod) for 8 ranks and its /metrics text is the template. Each series then gets the labels
the chart's PodMonitor gives it (namespace, pod, container, endpoint, job, instance, job_name) and the rank becomes
the global rank. Beside them, per pod: Prometheus' own scrape series (`up`, `scrape_*`), Ascend npu-exporter's chip
series (8 chips; names in operator/monitoring/exporters.py) and kube-state-metrics' container restarts.

The queries: as Grafana sends them (range queries over the dashboard's 6 h, pod and rank set to All), with the
recording rules (the dashboard as shipped) and, as the reference, the same panels over raw series
(`dashboard.build(recorded=False)`); Prometheus' `stats=all` gives its own execution time and the samples loaded."""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from bench.common import CACHE_DIR, REPO_ROOT, incv4_python, worker_env
from bench.results import Row
from incv4.operator.monitoring import alerts, dashboard
from incv4.operator.monitoring import exporters as X
from incv4.trainer import contract as M

sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
import prometheus_server as P  # noqa: E402  (the reusable OpenMetrics -> blocks -> Prometheus helper)

NAMESPACE, JOB = "ml-bench", "imagenet-128n"
SCRAPE_S = 15
BLOCK_S = 7200                      # promtool writes 2 h blocks: one file per block keeps each run to one block
STEP_S, BATCH, STEPS_PER_EPOCH = 0.081, 32, 39   # MindCV's 81 ms Ascend step; 1,281,167 / (1024 x 32) steps
SLOW_RANK, SLOW_FACTOR = 517, 1.3   # one straggler, so per-rank series differ as they do on a cluster

EXPOSITION = textwrap.dedent("""
    import sys, tempfile
    from incv4.trainer.metrics import exporter as m
    from prometheus_client import generate_latest
    m.prepare_multiprocess_dir(tempfile.mkdtemp(prefix="incv4-bench-exposition-"))
    launcher = m.LauncherMetrics(ranks=range(8))
    for rank in range(8):
        t = m.TrainerMetrics(rank, {"model": "inception_v4", "mindspore_version": "2.10.0", "world_size": "1024",
                                    "batch_size": "32", "recipe": "inception_v4_ascend"})
        t.set_planned(200 * 39, 39)
        t.compile_finished(45.0)
        t.steps_done(2, 0.16, 64, 0.001, 6.9, 0.045, 2, 1)
        t.evaluated(0.1, 0.3)
        t.checkpoint_saved(2.0)
        t.checkpoint_failed()
        t.nonfinite_loss()
    sys.stdout.write(generate_latest(m.build_registry()).decode())
""")


def exposition_template() -> list:
    """[(series name, labels)] of one pod's /metrics with 8 ranks (0-7), from incv4's real exporter."""
    from prometheus_client.parser import text_string_to_metric_families

    out = subprocess.run([incv4_python(), "-c", EXPOSITION], capture_output=True, text=True, check=True,
                         env=worker_env(), timeout=120).stdout
    # sorted: the multiprocess collector's order follows its files, and the template is part of the cache's stamp
    return sorted(((s.name, dict(s.labels)) for family in text_string_to_metric_families(out) for s in family.samples),
                  key=lambda sample: (sample[0], sorted(sample[1].items())))


def _labels_text(labels: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def pod_series(pod: int, template: list) -> list:
    """[(series text `name{labels}`, value model key, rank)] of pod `pod`: incv4's, Prometheus', the exporters'."""
    name = f"{JOB}-worker-{pod}"
    target = {"namespace": NAMESPACE, "pod": name, "container": "incv4", "endpoint": "metrics",
              "job": f"{NAMESPACE}/incv4", "instance": f"10.{pod // 200}.{pod % 200}.7:{M.METRICS_PORT}",
              M.JOB_NAME: JOB}
    series = []
    for metric, labels in template:
        labels = dict(labels)
        rank = pod * 8 + int(labels.get(M.RANK, 0))
        labels[M.RANK] = str(rank)
        series.append((f"{metric}{{{_labels_text({**labels, **target})}}}", metric, rank, labels))
    for metric in ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                   "scrape_series_added"):
        series.append((f"{metric}{{{_labels_text(target)}}}", metric, pod * 8, {}))
    node = {"job": "npu-exporter", "instance": f"10.{pod // 200}.{pod % 200}.1:8082", "model_name": "Ascend910B"}
    for chip in range(8):
        labels = {**node, X.NPU_ID: str(chip), X.NPU_POD: name, "exported_namespace": NAMESPACE}
        for metric in (X.NPU_UTILIZATION, X.NPU_HBM_USED, X.NPU_HEALTH, X.NPU_TEMPERATURE, X.NPU_POWER,
                       X.NPU_ERROR_CODE):
            series.append((f"{metric}{{{_labels_text(labels)}}}", metric, pod * 8 + chip, {}))
    ksm = {"namespace": NAMESPACE, "pod": name, "container": "incv4", "job": "kube-state-metrics",
           "instance": "10.250.0.9:8080"}
    series.append((f"{X.CONTAINER_RESTARTS}{{{_labels_text(ksm)}}}", X.CONTAINER_RESTARTS, 0, {}))
    return series


def _normal_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _steps(rank, t):
    """Steps a rank finished by time t (seconds since the run began)."""
    step = STEP_S * (SLOW_FACTOR if rank == SLOW_RANK else 1 + 0.01 * (rank % 7))
    return np.floor(t / step), step


def values(metric: str, rank: int, labels: dict, t: np.ndarray, start: float, n_series_pod: int) -> list:
    """The sample values of one series at times `t` (seconds since the run began; the run began at `start`)."""
    steps, step = _steps(rank, t)
    if metric.startswith(M.STEP_DURATION.name):
        if metric == M.STEP_DURATION.sum:
            return (steps * step).tolist()
        if metric == M.STEP_DURATION.count:
            return steps.astype(int).tolist()
        le = float(labels["le"])
        share = 1.0 if math.isinf(le) else _normal_cdf((math.log(le) - math.log(step)) / 0.05)
        return np.floor(steps * share).astype(int).tolist()
    if metric.startswith(M.CHECKPOINT_DURATION.name):
        saves = np.floor(t / 3600) + 1
        if metric == M.CHECKPOINT_DURATION.sum:
            return (saves * 2.0).tolist()
        return saves.astype(int).tolist() if metric == M.CHECKPOINT_DURATION.count or float(labels["le"]) >= 2.5 \
            else np.zeros_like(saves, dtype=int).tolist()
    return _simple(metric, rank, labels, t, start, steps, n_series_pod)


def _simple(metric, rank, labels, t, start, steps, n_series_pod):
    per_metric = {
        M.STEPS.name: lambda: steps.astype(int), M.GLOBAL_STEP.name: lambda: steps.astype(int),
        M.SAMPLES.name: lambda: (steps * BATCH).astype(int), M.DATA_WAIT.name: lambda: steps * 0.002,
        M.LOSS.name: lambda: 1.2 + 5.7 * np.exp(-t / 30000) + 0.01 * np.sin(t / 97 + rank),
        M.LEARNING_RATE.name: lambda: 0.045 * 0.5 * (1 + np.cos(np.pi * t / (86400 * 8))),
        M.EPOCH.name: lambda: (steps // STEPS_PER_EPOCH + 1).astype(int),
        M.LAST_STEP_TIMESTAMP.name: lambda: start + t - 0.05,
        M.CHECKPOINT_LAST_SUCCESS.name: lambda: start + np.floor(t / 3600) * 3600,
        M.EVAL_ACCURACY.name: lambda: np.minimum(0.8, (0.35 if labels.get(M.TOPK) == M.TOP1 else 0.55)
                                                 * (1 + np.floor(t / 7200) / 12)),
        "scrape_samples_scraped": lambda: np.full_like(t, n_series_pod), "scrape_duration_seconds": lambda:
            0.04 + 0.01 * np.sin(t / 61), X.NPU_UTILIZATION: lambda: 92 + 5 * np.sin(t / 300 + rank),
        X.NPU_HBM_USED: lambda: np.full_like(t, 31000), X.NPU_TEMPERATURE: lambda: 58 + 4 * np.sin(t / 900 + rank),
        X.NPU_POWER: lambda: 310 + 20 * np.sin(t / 200 + rank),
    }
    constant = {M.BUILD_INFO.name: 1, M.PLANNED_STEPS.name: 200 * STEPS_PER_EPOCH, "up": 1,
                M.STEPS_PER_EPOCH.name: STEPS_PER_EPOCH, M.GRAPH_COMPILE.name: 45.0, X.NPU_HEALTH: 1,
                "scrape_samples_post_metric_relabeling": n_series_pod}
    if metric in per_metric:
        return per_metric[metric]().tolist()
    return [constant.get(metric, 0)] * len(t)   # failure, restart and exit counters, error codes: 0


def write_block_file(path, series: list, start: float, block_start: float, block_end: float,
                     n_series_pod: int) -> int:
    """One OpenMetrics file with every series' samples in [block_start, block_end), 15 s apart. Returns samples."""
    times = np.arange(block_start, block_end, SCRAPE_S, dtype=float)
    tails = [f" {ts:.0f}\n" for ts in times]
    t = times - start
    written = 0
    with open(path, "w") as out:
        for text, metric, rank, labels in series:
            prefix = text + " "
            out.write("".join(prefix + str(v) + tail for v, tail in zip(
                values(metric, rank, labels, t, start, n_series_pod), tails)))
            written += len(tails)
        out.write("# EOF\n")
    return written


def stamp(pods: int, hours: int, template: list) -> str:
    """What the data depends on: reuse a TSDB only when this matches."""
    return json.dumps({"pods": pods, "hours": hours, "template": template, "version": 1}, sort_keys=True)


# -- the TSDB ---------------------------------------------------------------------------------------------------------


CACHE = CACHE_DIR / "monitoring"    # one folder per data size: <pods>pods-<hours>h/{tsdb, stamp.json, recorded.json}
# The server runs without compaction, so blocks stay 2 h long and it never rewrites the cached TSDB. A real server
# would have compacted 24 h into a few larger blocks, which makes queries faster, not slower.


def dir_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_tsdb(pods: int, hours: int, log=print) -> dict:
    """The raw samples of `pods` pods over the last `hours` whole 2 h blocks, reused while the stamp matches.
    Returns the stamp's facts (start, end, series, samples)."""
    template = exposition_template()
    want = stamp(pods, hours, template)
    work = CACHE / f"{pods}pods-{hours}h"
    tsdb, stamp_file = work / "tsdb", work / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()).get("stamp") == want:
        return json.loads(stamp_file.read_text())
    shutil.rmtree(work, ignore_errors=True)
    tsdb.mkdir(parents=True)
    end = math.floor(time.time() / BLOCK_S) * BLOCK_S
    start = end - hours * 3600
    series = [s for pod in range(pods) for s in pod_series(pod, template)]
    per_pod = len(series) // pods
    samples, began = 0, time.monotonic()
    for block_start in range(start, end, BLOCK_S):
        path = work / "block.om"
        samples += write_block_file(path, series, start, block_start, block_start + BLOCK_S, per_pod)
        P.backfill_openmetrics(path, tsdb)
        size = path.stat().st_size
        path.unlink()
        log(f"  [monitoring] block {(block_start - start) // BLOCK_S + 1}/{hours * 3600 // BLOCK_S}: "
            f"{size / 1e9:.1f} GB of OpenMetrics, {time.monotonic() - began:.0f} s so far")
    facts = {"stamp": want, "work": str(work), "start": start, "end": end, "pods": pods, "series": len(series),
             "samples": samples,
             "series_per_pod": per_pod, "incv4_series_per_rank": len(template) // 8,
             "openmetrics_gb_per_block": round(size / 1e9, 2), "build_s": round(time.monotonic() - began),
             "raw_blocks": sorted(p.name for p in tsdb.iterdir() if p.is_dir())}
    stamp_file.write_text(json.dumps(facts))
    return facts


# -- the queries ------------------------------------------------------------------------------------------------------

RANGE_S = 6 * 3600            # the dashboard's default time range (now-6h)
AUTO_INTERVAL_S = 30          # Grafana's $__interval for a ~700 px wide panel over 6 h


def grafana_intervals(panel: dict) -> tuple[int, int]:
    """(step, $__rate_interval) in seconds as Grafana derives them: the panel's minimum interval if larger than
    the automatic one, and max(interval + scrape interval, 4 x scrape interval) with the data source's 15 s."""
    minimum = panel.get("interval") or "0s"
    seconds = int(minimum[:-1]) * {"s": 1, "m": 60, "h": 3600}[minimum[-1]]
    step = max(AUTO_INTERVAL_S, seconds)
    return step, max(step + SCRAPE_S, 4 * SCRAPE_S)


def _all_of(values) -> str:
    """Grafana's value of a multi-value variable set to All, as its Prometheus data source sends it."""
    return "(" + "|".join(values) + ")"


def panel_queries(board: dict, pods: int) -> list:
    """[(panel title + refId, "range" | "instant", expression, step s)] as Grafana sends them with every pod and
    rank."""
    pod_all = _all_of(f"{JOB}-worker-{p}" for p in range(pods))
    rank_all = _all_of(str(r) for r in range(pods * 8))
    out = []
    for panel in board["panels"]:
        step, rate_interval = grafana_intervals(panel)
        for target in panel.get("targets", []):
            expr = dashboard.fill_variables(target["expr"], NAMESPACE, JOB, pod=pod_all, rank=rank_all,
                                            rate_interval=f"{rate_interval}s")
            out.append((f"{panel['title']} [{target['refId']}]", "instant" if target.get("instant") else "range",
                        expr, step))
    return out


def rule_queries() -> list:
    """[(rule name, "instant", expression, None)]: what Prometheus evaluates every evaluation interval."""
    return [(r.get("alert") or r.get("record"), "instant", r["expr"], None)
            for group in alerts.build_rules()["groups"] for r in group["rules"]]


def series_selected(prom, expr: str, at: float, names: set) -> int:
    """Series the expression's selectors match at `at` (each selector counted once)."""
    total = 0
    for selector in sorted(set(m.group(0) for m in re.finditer(r"\b[a-zA-Z_:][\w:]*(\{[^}]*\})?", expr)
                               if m.group(0).split("{")[0] in names)):
        result = prom.query(f"count({selector})", at=at)
        total += int(float(result[0]["value"][1])) if result else 0
    return total


def measure(prom, kind: str, expr: str, at: float, repeats: int, step=None) -> dict:
    """Median and max of Prometheus' own execution time and of the HTTP round trip (what Grafana waits for,
    JSON included), the samples loaded and the series returned."""
    exec_s, wall_s = [], []
    for _ in range(repeats):
        if kind == "range":
            data, wall = prom.query_with_stats(expr, start=at - RANGE_S, end=at, step=f"{step}s")
        else:
            data, wall = prom.query_with_stats(expr, at=at)
        exec_s.append(data["stats"]["timings"]["execTotalTime"])
        wall_s.append(wall)
    exec_s.sort()
    wall_s.sort()
    return {"exec_ms_median": 1000 * exec_s[len(exec_s) // 2], "exec_ms_max": 1000 * exec_s[-1],
            "wall_ms_median": 1000 * wall_s[len(wall_s) // 2], "wall_ms_max": 1000 * wall_s[-1],
            "samples": data["stats"]["samples"]["totalQueryableSamples"], "series_returned": len(data["result"])}


# -- the case ---------------------------------------------------------------------------------------------------------


RULES_FILE = REPO_ROOT / "charts" / "incv4" / "files" / "incv4-alerts.rules.yaml"


def _recorded_rules_present(facts: dict, log) -> None:
    """Give the recording rules the same 24 h history as the raw samples (`promtool tsdb create-blocks-from
    rules`, evaluated by a Prometheus over the raw blocks), once per version of the rule file."""
    work = Path(facts["work"])
    tsdb, recorded_stamp = work / "tsdb", work / "recorded.json"
    rules_hash = hashlib.sha256(RULES_FILE.read_bytes()).hexdigest()
    if recorded_stamp.exists():
        old = json.loads(recorded_stamp.read_text())
        if old["rules"] == rules_hash:
            return
        for name in old["blocks"]:
            shutil.rmtree(tsdb / name, ignore_errors=True)
    if "record:" not in RULES_FILE.read_text():
        recorded_stamp.write_text(json.dumps({"rules": rules_hash, "blocks": []}))
        return
    out = work / "recorded"
    shutil.rmtree(out, ignore_errors=True)
    began = time.monotonic()
    with _server(work) as prom:
        P.backfill_rules(prom, RULES_FILE, facts["start"], facts["end"], out)
    blocks = sorted(p.name for p in out.iterdir() if p.is_dir())
    for name in blocks:
        (out / name).rename(tsdb / name)
    shutil.rmtree(out)
    log(f"  [monitoring] recording rules backfilled in {time.monotonic() - began:.0f} s: {len(blocks)} blocks")
    recorded_stamp.write_text(json.dumps({"rules": rules_hash, "blocks": blocks}))


def _server(work: Path, rule_files=()):
    server = P.prometheus_on_blocks(work, rule_files=rule_files, compact=False)
    server.request_timeout = 600
    return server


def _measure_all(prom, queries, at, names, repeats, log) -> list:
    out = []
    for label, kind, expr, step in queries:
        figures = measure(prom, kind, expr, at, repeats, step)
        figures.update(query=label, kind=kind, series_selected=series_selected(prom, expr, at, names))
        log(f"  [monitoring] {label}: median {figures['wall_ms_median']:.0f} ms (exec "
            f"{figures['exec_ms_median']:.0f} ms), {figures['series_selected']} series, {figures['samples']} samples")
        out.append(figures)
    return out


def _series_names(template: list) -> set:
    return {name for name, _ in template} | {
        "up", X.NPU_UTILIZATION, X.NPU_HBM_USED, X.NPU_HEALTH, X.NPU_TEMPERATURE, X.NPU_POWER, X.NPU_ERROR_CODE,
        X.CONTAINER_RESTARTS}


def _rows(panels, raw_panels, rules, facts, size) -> list:
    """The slowest panel query and the whole dashboard's queries one after the other, each against the same
    dashboard over raw series (the reference); the slowest rule; the series per pod."""
    ranks = facts["pods"] * 8
    slowest = max(panels, key=lambda f: f["wall_ms_median"])
    raw_slowest = max(raw_panels, key=lambda f: f["wall_ms_median"]) if raw_panels else None
    raw_name = "dashboard over raw series"
    rows = [Row(f"monitoring: slowest dashboard query, {ranks} ranks, 6 h", "median wall ms",
                slowest["wall_ms_median"], raw_slowest and raw_slowest["wall_ms_median"], raw_name, False,
                target_absolute=200.0,
                note=f"{slowest['query']} (max {slowest['wall_ms_max']:.0f} ms, {slowest['series_selected']} series)"
                     + (f"; over raw series the slowest is {raw_slowest['query']}" if raw_slowest else "")),
            Row(f"monitoring: every dashboard query in turn, {ranks} ranks, 6 h", "sum of median wall ms",
                sum(f["wall_ms_median"] for f in panels),
                sum(f["wall_ms_median"] for f in raw_panels) if raw_panels else None, raw_name, False,
                note=f"{len(panels)} queries (Grafana sends them in parallel; the sum is the server's work)")]
    worst_rule = max(rules, key=lambda f: f["exec_ms_median"])
    rows.append(Row(f"monitoring: slowest rule evaluation, {ranks} ranks", "median exec ms",
                    worst_rule["exec_ms_median"], None, "-", False, note=worst_rule["query"]))
    rows.append(Row("monitoring: series per pod (8 ranks)", "series", facts["series_per_pod"], None, "-", False,
                    note=f"incv4's own {facts['incv4_series_per_rank']} per rank; {facts['series']} series and "
                         f"{facts['samples']} samples in all; TSDB {size / 1e9:.2f} GB"))
    return rows


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    pods, hours, repeats = (16, 4, 2) if quick else (128, 24, 5)
    facts = build_tsdb(pods, hours, log)
    _recorded_rules_present(facts, log)
    work = Path(facts["work"])
    size = dir_bytes(work / "tsdb")
    template = exposition_template()
    names = _series_names(template) | {r["record"] for g in alerts.build_rules()["groups"] for r in g["rules"]
                                       if "record" in r}
    at = facts["end"]
    with _server(work, rule_files=[RULES_FILE]) as prom:
        panels = _measure_all(prom, panel_queries(dashboard.build(), pods), at, names, repeats, log)
        # the reference: the same panels over raw series (seconds to a minute each at 1,024 ranks: fewer repeats)
        raw_panels = _measure_all(prom, panel_queries(dashboard.build(recorded=False), pods), at, names,
                                  max(1, repeats // 2), log) if "record:" in RULES_FILE.read_text() else []
        rules = _measure_all(prom, rule_queries(), at, names, repeats, log)
        health = [(r["name"], r["health"], r.get("lastError", "")) for g in prom.api("rules")["groups"]
                  for r in g["rules"] if r["health"] == "err"]
    notes = [f"{pods} pods x 8 ranks, {hours} h of 15 s samples backfilled with promtool into Debian's Prometheus "
             f"({facts['series']} series, {facts['samples']} samples, TSDB {size / 1e9:.2f} GB in bench/.cache, "
             "kept for the next run while the data's stamp matches). Dashboard queries: Grafana's range queries over "
             f"the last 6 h, step = the panel's minimum interval (1 min) over Grafana's automatic 30 s, "
             "$__rate_interval = max(step + 15 s, 60 s), pod and rank set to All (Grafana sends "
             "the regex alternation of every value). Wall = HTTP round trip incl. JSON; exec = Prometheus' "
             "execTotalTime (stats=all). Per query: median/max wall ms, series selected, samples loaded:"]
    notes += [f"{f['query']}: {f['wall_ms_median']:.0f}/{f['wall_ms_max']:.0f} ms, {f['series_selected']} series, "
              f"{f['samples']} samples" for f in panels + rules]
    notes += [f"rule health error: {h}" for h in health]
    return _rows(panels, raw_panels, rules, facts, size), notes, {
        "facts": {k: v for k, v in facts.items() if k not in ("stamp", "work")}, "panels": panels,
        "raw_panels": raw_panels, "rules": rules}
