"""operator/monitoring/dashboard.py: the committed Grafana JSON is the generator's output, names only metrics the
trainer exports, and every query runs on a real Prometheus scraping a real /metrics endpoint (light worker processes
using TrainerMetrics; tests/e2e/test_metrics_e2e.py repeats this over a real training run)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from incv4.operator.monitoring import alerts
from incv4.operator.monitoring import dashboard
from incv4.trainer import contract
from incv4.trainer.metrics import exporter as metrics
from metrics_workers import start_worker, stop_worker
from monitoring_checks import check_dashboard, grafana_schema_errors
from prometheus_server import PrometheusServer, free_port


# the SDK needs Python >= 3.11 (a dev dependency with that marker); CI's venv has it
pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk builds the dashboard (pip install .[dev])")


@pytest.fixture(scope="module")
def board():
    return dashboard.build()


def test_dashboard_validates_against_grafanas_schema(board, repo_root):
    committed = json.loads((repo_root / "charts" / "incv4" / "files" / "incv4-dashboard.json").read_text())
    assert grafana_schema_errors(committed) == []


def test_schema_check_catches_what_grafana_would_refuse(board):
    broken = json.loads(json.dumps(board))
    broken["refresh_rate"] = "30s"                                     # no such dashboard field
    broken["panels"][1]["gridPos"]["w"] = "wide"                       # not an integer
    broken["panels"][2]["options"]["colorMode"] = "rainbow"            # not a stat colour mode
    broken["panels"][3]["targets"][0]["format"] = "csv"                # not a Prometheus query format
    problems = "\n".join(grafana_schema_errors(broken))
    for wanted in ("'refresh_rate' was unexpected", "'rainbow' is not one of", "'csv' is not one of",
                   "['panels', 1]"):
        assert wanted in problems


def test_committed_dashboard_is_the_generators_output(repo_root):
    path = repo_root / "charts" / "incv4" / "files" / "incv4-dashboard.json"
    assert path.read_text() == dashboard.render(), \
        "regenerate: python -m incv4.operator.monitoring.dashboard > charts/incv4/files/incv4-dashboard.json"
    assert json.loads(path.read_text())["uid"] == "incv4-training"


def test_every_incv4_name_in_the_dashboard_exists_in_metrics(board):
    names = set(re.findall(r"\bincv4_\w+", json.dumps(board)))
    assert names, "the dashboard queries no incv4 metric"
    assert {contract.family_name(n) for n in names} <= set(contract.METRIC_NAMES)


def test_variables_and_datasource(board):
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "job", "pod", "rank"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["pod"]["multi"] and variables["rank"]["multi"] and variables["pod"]["includeAll"]
    # the job list comes from build_info, which every run reports: finished runs stay listed in their time range
    assert variables["job"]["definition"] == 'label_values(incv4_build_info{namespace="$namespace"}, job_name)'
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_every_query_is_scoped_to_the_selected_run(board):
    for expr in dashboard.expressions(board):
        for selector in re.findall(r"(\w+)\{([^}]*)\}", expr):
            name, labels = selector
            if name.startswith("incv4_"):
                assert 'namespace="$namespace", job_name="$job"' in labels, expr
            elif name.startswith("npu_chip_info_"):
                assert 'pod_name=~"$pod"' in labels, expr
            else:
                assert 'namespace="$namespace"' in labels, expr


def test_panels_cover_the_brief(board):
    titles = {p["title"] for p in board["panels"]}
    for wanted in ("Progress", "Step", "Epoch", "ETA", "Images/s", "Accuracy", "Since last step", "Checkpoint age",
                   "Step time", "Step time p90 by rank (stragglers)", "Data-wait share by rank", "Loss",
                   "Learning rate", "Validation accuracy", "NPU utilization", "HBM used", "NPU health (1 = healthy)",
                   "NPU temperature", "NPU power", "Worker restarts (launcher)"):
        assert wanted in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])
    assert board["schemaVersion"] >= 36


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (make setup-dev)")
def test_every_query_returns_data_from_a_real_prometheus(tmp_path, monkeypatch, board, repo_root):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset-by-test")
    metrics.prepare_multiprocess_dir(str(tmp_path / "prom"))
    launcher = metrics.LauncherMetrics(ranks=range(2))
    server = metrics.serve(free_port(), addr="127.0.0.1")
    workers = [start_worker(rank, steps=6) for rank in range(2)]
    labels = {"namespace": "team-a", "pod": "run1-worker-0", "job_name": "run1"}
    rules = repo_root / "charts" / "incv4" / "files" / "incv4-alerts.rules.yaml"
    (tmp_path / "tsdb").mkdir()
    try:
        with PrometheusServer(tmp_path, [(f"127.0.0.1:{server.port}", labels)], rule_files=[rules]) as prom:
            prom.wait_for('count_over_time(up{job="incv4"}[30s]) >= 4')  # enough samples for rates
            assert prom.query('up{job="incv4"}')[0]["value"][1] == "1", prom.log_path.read_text()
            problems = check_dashboard(prom, board, "team-a", "run1")
            assert not problems, "\n".join(problems)
            # the alert rules evaluate without error against the real series
            groups = prom.api("rules")["groups"]
            assert {r["name"] for g in groups for r in g["rules"]} == {
                r.get("alert") or r["record"] for g in alerts.build_rules()["groups"] for r in g["rules"]}
            assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    finally:
        for proc in workers:
            stop_worker(proc)
        server.shutdown()
        metrics._LAUNCHERS.remove(launcher)
