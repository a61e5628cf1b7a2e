"""operator/monitoring/alerts.py: the committed rule file is the generator's output, promtool accepts it, and the
promtool unit tests (tests/support/promtool/) make every alert fire where it should and stay silent where it should
not."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess

import pytest
import yaml

from incv4.operator.monitoring import alerts, dashboard, recording
from incv4.trainer import contract

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (make setup-dev installs it)")


@pytest.fixture(scope="module")
def rules_file(repo_root):
    return repo_root / "charts" / "incv4" / "files" / "incv4-alerts.rules.yaml"


@pytest.fixture(scope="module")
def unit_tests(repo_root):
    path = repo_root / "tests" / "support" / "promtool" / "make_tests.py"
    spec = importlib.util.spec_from_file_location("make_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_rule_file_is_the_generators_output(rules_file):
    assert rules_file.read_text() == alerts.render(), \
        "regenerate: python -m incv4.operator.monitoring.alerts > charts/incv4/files/incv4-alerts.rules.yaml"


def test_committed_unit_tests_are_up_to_date(repo_root, unit_tests):
    committed = repo_root / "tests" / "support" / "promtool" / "incv4-alerts.test.yaml"
    assert committed.read_text() == unit_tests.render(), \
        "regenerate: python tests/support/promtool/make_tests.py > tests/support/promtool/incv4-alerts.test.yaml"


@needs_promtool
def test_promtool_check_rules_passes(rules_file):
    result = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    every_rule = [r for g in alerts.build_rules()["groups"] for r in g["rules"]]
    assert len(every_rule) == len(alert_names()) + len(recording.RULES)
    assert f"SUCCESS: {len(every_rule)} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass(repo_root):
    result = subprocess.run(["promtool", "test", "rules", "tests/support/promtool/incv4-alerts.test.yaml"],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test(unit_tests):
    fires, silent = set(), set()
    for test in unit_tests.build()["tests"]:
        for case in test.get("alert_rule_test", []):  # the recording rules' test has none
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    assert fires == set(alert_names())
    assert silent == set(alert_names())


def test_every_alert_has_a_runbook_description():
    for rule in alerts.build_rules()["groups"][0]["rules"]:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert "What to check:" in rule["annotations"]["description"], rule["alert"]


def test_rules_use_only_metrics_the_trainer_exports():
    for rule in alerts.build_rules()["groups"][0]["rules"]:
        for name in re.findall(r"\bincv4_\w+", rule["expr"]):
            assert contract.family_name(name) in contract.METRIC_NAMES, (rule["alert"], name)


def test_thresholds_are_parameters():
    text = alerts.render(alerts.Thresholds(stall_minutes=3, checkpoint_max_age_minutes=7))
    rules = {r["alert"]: r for r in yaml.safe_load(text)["groups"][0]["rules"]}
    assert "> 180" in rules["Incv4TrainingStalled"]["expr"]
    assert "> 420" in rules["Incv4CheckpointStale"]["expr"]


def alert_names():
    return [r["alert"] for r in alerts.build_rules()["groups"][0]["rules"]]


def test_every_recording_rule_has_a_unit_test_and_the_dashboard_reads_it(unit_tests):
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk builds the dashboard")
    tested = {case["expr"] for test in unit_tests.build()["tests"] for case in test.get("promql_expr_test", [])}
    assert tested == {rule.record for rule in recording.RULES}
    queries = " ".join(dashboard.expressions(dashboard.build()))
    for rule in recording.RULES:
        assert f"{rule.record}{{" in queries, f"{rule.record} is recorded but no panel reads it"


def test_recording_rules_read_only_metrics_the_trainer_exports_and_keep_the_run():
    for rule in recording.RULES:
        for name in re.findall(r"\bincv4_\w+", rule.expr):
            assert contract.family_name(name) in contract.METRIC_NAMES, (rule.record, name)
        for by in re.findall(r"by \(([^)]*)\)", rule.expr):
            assert by.startswith("namespace, job_name"), rule.record  # never across runs
        level = rule.record.split(":")[0]
        assert {"job": "namespace, job_name", "pod": "namespace, job_name, pod",
                "rank": "namespace, job_name, pod, rank"}[level] in rule.expr, rule.record


def test_a_panel_over_raw_series_computes_what_the_recording_rule_records():
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk builds the dashboard")
    raw = recording.SAMPLES.over('namespace="ml", pod=~"a|b"', recorded=False)
    assert raw == '(sum by (namespace, job_name, pod) (rate(incv4_samples_total{namespace="ml", pod=~"a|b"}[2m])))'
    assert recording.SAMPLES.over('namespace="ml"') == 'pod:incv4_samples_total:rate2m{namespace="ml"}'
    assert "pod:" not in " ".join(dashboard.expressions(dashboard.build(recorded=False)))
