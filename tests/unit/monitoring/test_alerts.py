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

from incv4.operator.monitoring import alerts
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
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass(repo_root):
    result = subprocess.run(["promtool", "test", "rules", "tests/support/promtool/incv4-alerts.test.yaml"],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test(unit_tests):
    fires, silent = set(), set()
    for test in unit_tests.build()["tests"]:
        for case in test["alert_rule_test"]:
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
