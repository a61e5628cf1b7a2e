"""Alert rules of a training run, generated as a plain Prometheus rule file (`groups:`).

The Helm chart wraps `groups` into a PrometheusRule (charts/incv4/templates, `.Files.Get`); promtool checks and unit
tests the plain file (tests/support/promtool/). Regenerate after a change:

    python -m incv4.operator.monitoring.alerts > charts/incv4/files/incv4-alerts.rules.yaml

Metric and label names come from incv4.trainer.contract. Every rule aggregates by the run's identity,
contract.RUN_LABELS (`namespace` and `job_name`, the Volcano job name the chart's PodMonitor relabels onto every
series). Thresholds are parameters of `build_rules`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

from incv4.operator.monitoring import exporters as X
from incv4.operator.monitoring import recording
from incv4.trainer import contract as M

RUN = ", ".join(M.RUN_LABELS)
RUN_RANK = f"{RUN}, {M.RANK}"
# `{{ $labels.<name> }}`: a label's value in an annotation.
LABEL = {name: f"{{{{ $labels.{name} }}}}" for name in (M.NAMESPACE, M.JOB_NAME, M.POD, M.RANK, X.NPU_POD, X.NPU_ID)}
WHICH_RUN = f"{LABEL[M.NAMESPACE]}/{LABEL[M.JOB_NAME]}"
AGE = "{{ $value | humanizeDuration }}"


@dataclass(frozen=True)
class Thresholds:
    stall_minutes: int = 10            # no finished step for this long while steps remain
    first_step_minutes: int = 30       # workers up but no first step (compile, data, cluster forming) for this long
    target_down_minutes: int = 5       # /metrics endpoint unreachable
    regression_factor: float = 1.25    # recent mean step time vs the run's own past
    regression_window: str = "10m"     # "recent"
    regression_baseline: str = "1h"    # "past", ending where "recent" begins
    straggler_factor: float = 1.2      # a rank's mean step time vs the median rank
    straggler_data_wait_share: float = 0.2  # a rank's data-wait share above the median rank's by this much
    checkpoint_max_age_minutes: int = 60
    restarts_per_30m: int = 3          # worker restarts that mean a crash loop


def _mean_step_seconds(by: str, window: str, offset: str = "") -> str:
    off = f" offset {offset}" if offset else ""
    return (f"sum by ({by}) (rate({M.STEP_DURATION.sum}[{window}]{off}))\n"
            f"  / sum by ({by}) (rate({M.STEP_DURATION.count}[{window}]{off}))")


def _data_wait_share(by: str, window: str) -> str:
    """Share of a rank's time spent waiting for input (the step histogram excludes that wait)."""
    wait = f"sum by ({by}) (rate({M.DATA_WAIT}[{window}]))"
    return f"{wait}\n  / ({wait} + sum by ({by}) (rate({M.STEP_DURATION.sum}[{window}])))"


def _rule(name, expr, for_, severity, summary, description):
    return {
        "alert": name,
        "expr": expr.strip() + "\n",
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": " ".join(description.split())},
    }


def _progress_rules(t: Thresholds) -> list:
    """Rules on whether the run moves: stalled, never started, unscraped."""
    return [
        _rule("Incv4TrainingStalled", f"""
(time() - max by ({RUN}) ({M.LAST_STEP_TIMESTAMP})) > {t.stall_minutes * 60}
and on ({RUN})
max by ({RUN}) ({M.GLOBAL_STEP}) < max by ({RUN}) ({M.PLANNED_STEPS})
""", "1m", "critical",
              f"Training {WHICH_RUN} has made no step for {t.stall_minutes} minutes",
              f"""No rank finished a step for {AGE} while steps remain. What to check:
              `incv4 status {LABEL[M.JOB_NAME]}` and the pod logs (a rank blocked in a collective waits for
              the slowest peer: look for one pod that crashed, restarted or is evicted); the Volcano job's events;
              the NPU health panel; whether the data volume is still mounted and readable."""),
        _rule("Incv4NoFirstStep", f"""
max by ({RUN}) ({M.BUILD_INFO})
unless on ({RUN})
max by ({RUN}) ({M.LAST_STEP_TIMESTAMP})
""", f"{t.first_step_minutes}m", "warning",
              f"Training {WHICH_RUN} started {t.first_step_minutes} minutes ago and has not finished a step",
              """The workers reported their build info but no step yet. What to check: the launcher log (did every
              peer join the cluster, or is it waiting on a missing pod?), graph compile progress in the worker
              logs (a first compile takes minutes), the data directory (an empty or slow volume blocks the first
              batch)."""),
        _rule("Incv4MetricsTargetDown", f"""
up{{{M.JOB_NAME}!=""}} == 0
""", f"{t.target_down_minutes}m", "warning",
              f"Metrics of {LABEL[M.NAMESPACE]}/{LABEL[M.POD]} unreachable",
              f"""Prometheus could not scrape the launcher's /metrics of pod {LABEL[M.POD]} for
              {t.target_down_minutes} minutes: the launcher is dead or hung, or the pod is not ready. What to check:
              the pod's status and restarts (`kubectl describe pod`), the launcher log, that the metrics port matches
              the PodMonitor's, network policies between Prometheus and the pod."""),
    ]


def _speed_rules(t: Thresholds) -> list:
    """Rules on the pace: slower than the run's own past, a rank lagging the others."""
    w = t.regression_window
    return [
        _rule("Incv4StepTimeRegression", f"""
({_mean_step_seconds(RUN, w)})
>
{t.regression_factor} * ({_mean_step_seconds(RUN, t.regression_baseline, offset=w)})
""", "10m", "warning",
              f"Step time of {WHICH_RUN} rose above {t.regression_factor}x its own recent past",
              f"""The mean step time over the last {w} is more than {t.regression_factor} times the mean over the
              {t.regression_baseline} before. What to check: the per-rank step time and data-wait panels (input
              bound? one slow rank?), NPU utilization, temperature and power (throttling), other jobs sharing the
              nodes or the storage, checkpoint or evaluation phases running more often."""),
        _rule("Incv4RankStraggler", f"""
(
  ({_mean_step_seconds(RUN_RANK, w)})
  > on ({RUN}) group_left ()
  {t.straggler_factor} * quantile by ({RUN}) (0.5, {_mean_step_seconds(RUN_RANK, w)})
)
or
(
  ({_data_wait_share(RUN_RANK, w)})
  > on ({RUN}) group_left ()
  ({t.straggler_data_wait_share} + quantile by ({RUN}) (0.5, {_data_wait_share(RUN_RANK, w)}))
)
""", "15m", "warning",
              f"Rank {LABEL[M.RANK]} of {WHICH_RUN} lags the other ranks",
              f"""Over the last {w} this rank's mean step time is above {t.straggler_factor}x the median rank's, or
              its share of time waiting for data is {t.straggler_data_wait_share} above the median rank's. With a
              synchronous all-reduce every rank waits for the slowest, so the whole job runs at this rank's pace.
              What to check: the node of this rank's pod (CPU contention from input workers, a slow local disk,
              NPU temperature or power throttling), its data shard, `num_parallel_workers`."""),
    ]


def _health_rules(t: Thresholds) -> list:
    """Rules on the run's health: non-finite losses, checkpoints, crash-looping workers, failing chips."""
    return [
        _rule("Incv4NonFiniteLoss", f"""
sum by ({RUN_RANK}) (increase({M.NONFINITE_LOSS_STEPS}[10m])) > 0
""", "0m", "warning",
              f"Non-finite loss in {WHICH_RUN} rank {LABEL[M.RANK]}",
              f"""Steps produced NaN or infinite losses in the last 10 minutes; the trainer skips them and stops the
              run as DIVERGED (exit {M.DIVERGED}) after `max_nonfinite_steps` in a row. What to check: the loss and lr
              panels (a warm-up too short or an lr too high for the global batch), the loss scale under AMP O2/O3,
              corrupt input images; resume from the last checkpoint with a lower lr if it diverged."""),
        _rule("Incv4CheckpointStale", f"""
(time() - max by ({RUN}) ({M.CHECKPOINT_LAST_SUCCESS})) > {t.checkpoint_max_age_minutes * 60}
and on ({RUN})
(time() - max by ({RUN}) ({M.LAST_STEP_TIMESTAMP})) < {t.stall_minutes * 60}
""", "5m", "warning",
              f"No checkpoint of {WHICH_RUN} for {t.checkpoint_max_age_minutes} minutes",
              f"""Training is progressing but the last successful checkpoint is
              {AGE} old, so a failure now loses that much work. What to check: the
              checkpoint failures counter and the worker log around saves, free space and write permission on the
              checkpoint volume, the recipe's checkpoint interval (`ckpt_save_interval`)."""),
        _rule("Incv4CheckpointFailing", f"""
sum by ({RUN_RANK}) (increase({M.CHECKPOINT_FAILURES}[30m])) > 0
""", "0m", "warning",
              f"Checkpoint saves of {WHICH_RUN} fail",
              """A checkpoint save failed in the last 30 minutes (the run goes on with its previous checkpoint).
              What to check: the worker log for the error, free space, quota and permissions of the checkpoint
              volume, whether the volume is mounted read-only."""),
        _rule("Incv4WorkerRestarting", f"""
sum by ({RUN_RANK}) (increase({M.WORKER_RESTARTS}[30m])) > {t.restarts_per_30m}
""", "0m", "warning",
              f"Rank {LABEL[M.RANK]} of {WHICH_RUN} keeps restarting",
              f"""The launcher restarted this worker more than {t.restarts_per_30m} times in 30 minutes: a crash
              loop. What to check: the exit reasons (`{M.WORKER_EXITS}`, restarts panel), the worker log
              before each exit, memory limits (OOM kills show as reason "{M.SIGNAL_REASON}"), NPU health."""),
        _rule("Incv4NPUUnhealthy", f"""
({X.NPU_HEALTH} == 0)
* on ({X.NPU_POD}) group_left ({M.JOB_NAME})
max by ({X.NPU_POD}, {M.JOB_NAME}) (label_replace({M.BUILD_INFO}, "{X.NPU_POD}", "$1", "{M.POD}", "(.+)"))
""", "1m", "critical",
              f"NPU {LABEL[X.NPU_ID]} of pod {LABEL[X.NPU_POD]} ({LABEL[M.JOB_NAME]}) is unhealthy",
              f"""Ascend npu-exporter reports this chip unhealthy while a training pod uses it. The run will stall or
              fail at its next collective. What to check: `npu-smi info` on the node, the device plugin's and
              npu-exporter's logs, the chip's error code (`{X.NPU_ERROR_CODE}`), temperature and power; cordon
              the node and let Volcano reschedule the job from its last checkpoint."""),
    ]


def build_rules(t: Thresholds = Thresholds()) -> dict:
    """The rule file as a mapping: {"groups": [the alerts, the recording rules the dashboard reads]}."""
    return {"groups": [{"name": "incv4-training", "rules": _progress_rules(t) + _speed_rules(t) + _health_rules(t)},
                       recording.group()]}


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL) as readable `|` blocks."""


_LiteralDumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def render(t: Thresholds = Thresholds()) -> str:
    header = "# Generated by `python -m incv4.operator.monitoring.alerts`; do not edit by hand.\n"
    return header + yaml.dump(build_rules(t), Dumper=_LiteralDumper, sort_keys=False, width=120)


def main(argv=None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
