"""Writes incv4-alerts.test.yaml, the `promtool test rules` unit tests of every alert in
charts/incv4/files/incv4-alerts.rules.yaml: for each alert, input series where it must fire and where it must stay
silent. promtool compares annotations too, so the expected annotations are the rule's templates filled with the
expected labels (and the expected $value where a template shows it).

    python tests/support/promtool/make_tests.py > tests/support/promtool/incv4-alerts.test.yaml
    promtool test rules tests/support/promtool/incv4-alerts.test.yaml
"""
from __future__ import annotations

import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE.parents[2] / "charts" / "incv4" / "files" / "incv4-alerts.rules.yaml"

RUN = 'namespace="ml",job_name="run1"'
POD = RUN + ',pod="run1-worker-0"'
RUN_LABELS = {"namespace": "ml", "job_name": "run1"}


def s(name, labels, values):
    return {"series": f"{name}{{{labels}}}", "values": values}


def rank(r):
    return POD + f',rank="{r}"'


# (alert, [input series], [(eval_time, [expected alert labels (without alertname/severity)], value or None)])
SCENARIOS = [
    ("Incv4TrainingStalled", [
        s("incv4_last_step_timestamp_seconds", rank(0), "0+60x5 300x30"),   # last step at minute 5
        s("incv4_global_step", rank(0), "0+1x5 5x30"),
        s("incv4_planned_steps", rank(0), "100x35"),
    ], [("14m", [], None), ("17m", [RUN_LABELS], 720)]),
    ("Incv4TrainingStalled", [  # a finished run stops stepping: silent
        s("incv4_last_step_timestamp_seconds", rank(0), "0+60x5 300x30"),
        s("incv4_global_step", rank(0), "0+1x5 5x30"),
        s("incv4_planned_steps", rank(0), "5x35"),
    ], [("17m", [], None)]),

    ("Incv4NoFirstStep", [
        s("incv4_build_info", rank(0) + ',model="inception_v4"', "1x40"),
    ], [("20m", [], None), ("35m", [RUN_LABELS], None)]),
    ("Incv4NoFirstStep", [  # stepping: silent
        s("incv4_build_info", rank(0) + ',model="inception_v4"', "1x40"),
        s("incv4_last_step_timestamp_seconds", rank(0), "0+60x40"),
    ], [("35m", [], None)]),

    ("Incv4MetricsTargetDown", [
        s("up", POD + ',job="ml/incv4",instance="10.0.0.5:9100"', "1x5 0x10"),
        s("up", 'namespace="ml",pod="web-0",job="ml/web",instance="10.0.0.6:80"', "0x15"),  # not a training pod
    ], [("8m", [], None),
        ("12m", [dict(RUN_LABELS, pod="run1-worker-0", job="ml/incv4", instance="10.0.0.5:9100")], None)]),

    ("Incv4StepTimeRegression", [  # 0.1 s/step for 80 minutes, then 0.2 s/step
        s("incv4_step_duration_seconds_count", rank(0), "0+600x80 48300+300x30"),
        s("incv4_step_duration_seconds_sum", rank(0), "0+60x110"),
    ], [("80m", [], None), ("105m", [RUN_LABELS], None)]),
    ("Incv4StepTimeRegression", [  # steady: silent
        s("incv4_step_duration_seconds_count", rank(0), "0+600x110"),
        s("incv4_step_duration_seconds_sum", rank(0), "0+60x110"),
    ], [("105m", [], None)]),

    ("Incv4RankStraggler", [  # rank 2 steps at 0.15 s against 0.1 s for the others
        s("incv4_step_duration_seconds_count", rank(0), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(0), "0+60x30"),
        s("incv4_step_duration_seconds_count", rank(1), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(1), "0+60x30"),
        s("incv4_step_duration_seconds_count", rank(2), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(2), "0+90x30"),
    ], [("10m", [], None), ("20m", [dict(RUN_LABELS, rank="2")], None)]),
    ("Incv4RankStraggler", [  # equal step times, but rank 1 waits half its time for data
        s("incv4_step_duration_seconds_count", rank(0), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(0), "0+60x30"),
        s("incv4_data_wait_seconds_total", rank(0), "0+3x30"),
        s("incv4_step_duration_seconds_count", rank(1), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(1), "0+60x30"),
        s("incv4_data_wait_seconds_total", rank(1), "0+30x30"),
        s("incv4_step_duration_seconds_count", rank(2), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(2), "0+60x30"),
        s("incv4_data_wait_seconds_total", rank(2), "0+3x30"),
    ], [("20m", [dict(RUN_LABELS, rank="1")], None)]),
    ("Incv4RankStraggler", [  # balanced ranks: silent
        s("incv4_step_duration_seconds_count", rank(0), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(0), "0+60x30"),
        s("incv4_data_wait_seconds_total", rank(0), "0+3x30"),
        s("incv4_step_duration_seconds_count", rank(1), "0+600x30"),
        s("incv4_step_duration_seconds_sum", rank(1), "0+63x30"),
        s("incv4_data_wait_seconds_total", rank(1), "0+4x30"),
    ], [("20m", [], None)]),

    ("Incv4NonFiniteLoss", [
        s("incv4_nonfinite_loss_steps_total", rank(0), "0x10 1x20"),
    ], [("8m", [], None), ("12m", [dict(RUN_LABELS, rank="0")], None), ("25m", [], None)]),

    ("Incv4CheckpointStale", [  # stepping, last checkpoint at time 0
        s("incv4_checkpoint_last_success_timestamp_seconds", rank(0), "0x100"),
        s("incv4_last_step_timestamp_seconds", rank(0), "0+60x100"),
    ], [("62m", [], None), ("70m", [RUN_LABELS], 4200)]),
    ("Incv4CheckpointStale", [  # a checkpoint every minute: silent
        s("incv4_checkpoint_last_success_timestamp_seconds", rank(0), "0+60x100"),
        s("incv4_last_step_timestamp_seconds", rank(0), "0+60x100"),
    ], [("70m", [], None)]),

    ("Incv4CheckpointFailing", [
        s("incv4_checkpoint_failures_total", rank(0), "0x5 1x30"),
    ], [("4m", [], None), ("10m", [dict(RUN_LABELS, rank="0")], None)]),

    ("Incv4WorkerRestarting", [
        s("incv4_worker_restarts_total", rank(3), "0 1 2 3 4 5x30"),
    ], [("10m", [dict(RUN_LABELS, rank="3")], None)]),
    ("Incv4WorkerRestarting", [  # one restart: silent
        s("incv4_worker_restarts_total", rank(3), "0 1x30"),
    ], [("10m", [], None)]),

    ("Incv4NPUUnhealthy", [
        s("incv4_build_info", rank(0) + ',model="inception_v4"', "1x15"),
        s("npu_chip_info_health_status",
          'id="3",pod_name="run1-worker-0",namespace="ml",container_name="main",job="npu-exporter"', "1x3 0x10"),
        s("npu_chip_info_health_status",  # a chip of a pod that is not training: not this alert's business
          'id="1",pod_name="other-0",namespace="ml",container_name="main",job="npu-exporter"', "0x15"),
        s("npu_chip_info_health_status",
          'id="0",pod_name="run1-worker-0",namespace="ml",container_name="main",job="npu-exporter"', "1x15"),
    ], [("3m", [], None),
        ("6m", [{"id": "3", "pod_name": "run1-worker-0", "namespace": "ml", "container_name": "main",
                 "job": "npu-exporter", "job_name": "run1"}], None)]),
]


def humanize_duration(seconds: float) -> str:
    """Prometheus' humanizeDuration for whole seconds >= 1."""
    seconds = int(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    parts, started = [], False
    for value, unit in ((days, "d"), (hours, "h"), (minutes, "m")):
        if value or started:
            parts.append(f"{value}{unit}")
            started = True
    parts.append(f"{secs}s")
    return " ".join(parts)


def fill(template: str, labels: dict, value) -> str:
    def label(m):
        if m.group(1) not in labels:
            raise KeyError(f"annotation uses label {m.group(1)!r} the alert does not carry")
        return labels[m.group(1)]

    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", label, template)
    if "$value" in text:
        if value is None:
            raise KeyError("annotation shows $value: give the expected value")
        text = text.replace("{{ $value | humanizeDuration }}", humanize_duration(value))
    return text


def build() -> dict:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = []
    for alert, series, checks in SCENARIOS:
        rule = rules[alert]
        cases = []
        for eval_time, expected, value in checks:
            exp = []
            for labels in expected:
                exp.append({
                    "exp_labels": dict(labels, severity=rule["labels"]["severity"]),
                    "exp_annotations": {k: fill(v, labels, value) for k, v in rule["annotations"].items()},
                })
            cases.append({"eval_time": eval_time, "alertname": alert, "exp_alerts": exp})
        tests.append({"interval": "1m", "input_series": series, "alert_rule_test": cases})
    return {
        "rule_files": ["../../../charts/incv4/files/incv4-alerts.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": tests,
    }


def render() -> str:
    header = "# Generated by tests/support/promtool/make_tests.py; do not edit by hand.\n"
    return header + yaml.safe_dump(build(), sort_keys=False, width=200)


if __name__ == "__main__":
    sys.stdout.write(render())
