"""Writes incv4-alerts.test.yaml, the `promtool test rules` unit tests of every alert in
charts/incv4/files/incv4-alerts.rules.yaml: for each alert, input series where it must fire and where it must stay
silent. promtool compares annotations too, so the expected annotations are the rule's templates filled with the
expected labels (and the expected $value where a template shows it). The recording rules get one test of every
recorded series' values.

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


# The recording rules (operator/monitoring/recording.py): two ranks on pod 0 and one on pod 1, each finishing one step
# a second (a quarter of the steps within 0.05 s, the rest within 0.1 s), 0.8 s of step time and 0.2 s of data wait
# a second, 32 images a step. Every rate is over whole samples 1 minute apart, so the values are exact.
POD1 = RUN + ',pod="run1-worker-1"'


def _rank_series(labels):
    return [
        s("incv4_steps_total", labels, "0+60x10"),
        s("incv4_samples_total", labels, "0+1920x10"),
        s("incv4_data_wait_seconds_total", labels, "0+12x10"),
        s("incv4_step_duration_seconds_sum", labels, "0+48x10"),
        s("incv4_step_duration_seconds_count", labels, "0+60x10"),
        s("incv4_step_duration_seconds_bucket", labels + ',le="0.05"', "0+15x10"),
        s("incv4_step_duration_seconds_bucket", labels + ',le="0.1"', "0+60x10"),
        s("incv4_step_duration_seconds_bucket", labels + ',le="+Inf"', "0+60x10"),
        s("incv4_worker_exits_total", labels + ',reason="failure"', "0 1x10"),
        s("incv4_worker_exits_total", labels + ',reason="ok"', "0x10"),
        s("incv4_worker_restarts_total", labels, "0 1x10"),
        s("incv4_checkpoint_failures_total", labels, "0x3 2x7"),
        s("incv4_nonfinite_loss_steps_total", labels, "0x3 1+1x7"),   # one more a minute from minute 3
        s("incv4_eval_accuracy_ratio", labels + ',topk="1"', "0.5x10"),
        s("incv4_eval_accuracy_ratio", labels + ',topk="5"', "0.75x10"),
    ]


def _checkpoint_series(labels, seconds):
    """Rank `labels` saved one checkpoint a minute taking `seconds` (seconds = None: this rank never saves)."""
    if seconds is None:
        return [s("incv4_checkpoint_duration_seconds_sum", labels, "0x10"),
                s("incv4_checkpoint_duration_seconds_count", labels, "0x10")]
    return [s("incv4_checkpoint_duration_seconds_sum", labels, f"0+{seconds}x10"),
            s("incv4_checkpoint_duration_seconds_count", labels, "0+1x10")]


RECORDING_INPUT = (_rank_series(rank(0)) + _rank_series(rank(1)) + _rank_series(POD1 + ',rank="8"')
                   + _checkpoint_series(rank(0), 4) + _checkpoint_series(rank(1), None)
                   + _checkpoint_series(POD1 + ',rank="8"', 2))
POD_0 = 'namespace="ml",job_name="run1",pod="run1-worker-0"'
POD_1 = 'namespace="ml",job_name="run1",pod="run1-worker-1"'
# (record, [(labels, value)]) at 5m
RECORDING_EXPECTED = [
    ("pod:incv4_samples_total:rate2m", [(POD_0, 64), (POD_1, 32)]),
    ("pod:incv4_step_duration_seconds_sum:rate2m", [(POD_0, 1.6), (POD_1, 0.8)]),
    ("pod:incv4_step_duration_seconds_count:rate2m", [(POD_0, 2), (POD_1, 1)]),
    ("job:incv4_step_duration_seconds_bucket:rate2m", [
        (RUN + ',le="0.05"', 0.75), (RUN + ',le="0.1"', 3),
        (RUN + ',le="+Inf"', 3)]),
    ("rank:incv4_steps_total:rate2m", [(POD_0 + ',rank="0"', 1), (POD_0 + ',rank="1"', 1),
                                       (POD_1 + ',rank="8"', 1)]),
    # p90: 0.9 of 1 step/s falls in (0.05, 0.1], where 0.75 of the steps lie: 0.05 + 0.05 x (0.9 - 0.25) / 0.75
    ("rank:incv4_step_duration_seconds:p90_rate2m", [(POD_0 + ',rank="0"', 0.09333333333333334),
                                                     (POD_0 + ',rank="1"', 0.09333333333333334),
                                                     (POD_1 + ',rank="8"', 0.09333333333333334)]),
    ("rank:incv4_data_wait_seconds_total:ratio_rate2m", [(POD_0 + ',rank="0"', 0.2), (POD_0 + ',rank="1"', 0.2),
                                                         (POD_1 + ',rank="8"', 0.2)]),
    ("pod:incv4_worker_exits_total:sum", [(POD_0 + ',reason="failure"', 2), (POD_0 + ',reason="ok"', 0),
                                          (POD_1 + ',reason="failure"', 1), (POD_1 + ',reason="ok"', 0)]),
    ("pod:incv4_worker_restarts_total:sum", [(POD_0, 2), (POD_1, 1)]),
    ("pod:incv4_checkpoint_failures_total:sum", [(POD_0, 4), (POD_1, 2)]),
    ("pod:incv4_nonfinite_loss_steps_total:increase2m", [(POD_0, 4), (POD_1, 2)]),
    # rank 1 never saved (0/0): the pod's mean is rank 0's
    ("pod:incv4_checkpoint_duration_seconds:mean", [(POD_0, 4), (POD_1, 2)]),
    ("pod:incv4_eval_accuracy_ratio:max", [(POD_0 + ',topk="1"', 0.5), (POD_0 + ',topk="5"', 0.75),
                                           (POD_1 + ',topk="1"', 0.5), (POD_1 + ',topk="5"', 0.75)]),
]


def recording_test() -> dict:
    return {"interval": "1m", "input_series": RECORDING_INPUT, "promql_expr_test": [
        {"expr": record, "eval_time": "5m",
         "exp_samples": [{"labels": f"{record}{{{labels}}}", "value": value} for labels, value in samples]}
        for record, samples in RECORDING_EXPECTED]}


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
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
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
    tests.append(recording_test())
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
