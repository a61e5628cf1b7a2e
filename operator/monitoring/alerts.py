"""Alert rules of a training run, generated as a plain Prometheus rule file (`groups:`).

The Helm chart wraps `groups` into a PrometheusRule (charts/incv4/templates, `.Files.Get`); promtool checks and unit
tests the plain file (tests/promtool/). Regenerate after a change:

    python -m incv4.operator.monitoring.alerts > charts/incv4/files/incv4-alerts.rules.yaml

Every rule aggregates by the run's identity, `namespace` and `job_name` (the Volcano job name; see RUN_LABELS in
trainer/dashboard.py for the PodMonitor relabelling this assumes). Thresholds are parameters of `build_rules`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

RUN = "namespace, job_name"


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
    return (f"sum by ({by}) (rate(incv4_step_duration_seconds_sum[{window}]{off}))\n"
            f"  / sum by ({by}) (rate(incv4_step_duration_seconds_count[{window}]{off}))")


def _data_wait_share(by: str, window: str) -> str:
    """Share of a rank's time spent waiting for input (the step histogram excludes that wait)."""
    wait = f"sum by ({by}) (rate(incv4_data_wait_seconds_total[{window}]))"
    return f"{wait}\n  / ({wait} + sum by ({by}) (rate(incv4_step_duration_seconds_sum[{window}])))"


def _rule(name, expr, for_, severity, summary, description):
    return {
        "alert": name,
        "expr": expr.strip() + "\n",
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": " ".join(description.split())},
    }


def build_rules(t: Thresholds = Thresholds()) -> dict:
    """The rule file as a mapping: {"groups": [...]}."""
    rank = RUN + ", rank"
    w = t.regression_window
    rules = [
        _rule("Incv4TrainingStalled", f"""
(time() - max by ({RUN}) (incv4_last_step_timestamp_seconds)) > {t.stall_minutes * 60}
and on ({RUN})
max by ({RUN}) (incv4_global_step) < max by ({RUN}) (incv4_planned_steps)
""", "1m", "critical",
              "Training {{ $labels.namespace }}/{{ $labels.job_name }} has made no step for "
              f"{t.stall_minutes} minutes",
              f"""No rank finished a step for {{{{ $value | humanizeDuration }}}} while steps remain. What to check:
              `incv4 status {{{{ $labels.job_name }}}}` and the pod logs (a rank blocked in a collective waits for
              the slowest peer: look for one pod that crashed, restarted or is evicted); the Volcano job's events;
              the NPU health panel; whether the data volume is still mounted and readable."""),
        _rule("Incv4NoFirstStep", f"""
max by ({RUN}) (incv4_build_info)
unless on ({RUN})
max by ({RUN}) (incv4_last_step_timestamp_seconds)
""", f"{t.first_step_minutes}m", "warning",
              "Training {{ $labels.namespace }}/{{ $labels.job_name }} started "
              f"{t.first_step_minutes} minutes ago and has not finished a step",
              """The workers reported their build info but no step yet. What to check: the launcher log (did every
              peer join the cluster, or is it waiting on a missing pod?), graph compile progress in the worker
              logs (a first compile takes minutes), the data directory (an empty or slow volume blocks the first
              batch)."""),
        _rule("Incv4MetricsTargetDown", """
up{job_name!=""} == 0
""", f"{t.target_down_minutes}m", "warning",
              "Metrics of {{ $labels.namespace }}/{{ $labels.pod }} unreachable",
              f"""Prometheus could not scrape the launcher's /metrics of pod {{{{ $labels.pod }}}} for
              {t.target_down_minutes} minutes: the launcher is dead or hung, or the pod is not ready. What to check:
              the pod's status and restarts (`kubectl describe pod`), the launcher log, that the metrics port matches
              the PodMonitor's, network policies between Prometheus and the pod."""),
        _rule("Incv4StepTimeRegression", f"""
({_mean_step_seconds(RUN, w)})
>
{t.regression_factor} * ({_mean_step_seconds(RUN, t.regression_baseline, offset=w)})
""", "10m", "warning",
              "Step time of {{ $labels.namespace }}/{{ $labels.job_name }} rose above "
              f"{t.regression_factor}x its own recent past",
              f"""The mean step time over the last {w} is more than {t.regression_factor} times the mean over the
              {t.regression_baseline} before. What to check: the per-rank step time and data-wait panels (input
              bound? one slow rank?), NPU utilization, temperature and power (throttling), other jobs sharing the
              nodes or the storage, checkpoint or evaluation phases running more often."""),
        _rule("Incv4RankStraggler", f"""
(
  ({_mean_step_seconds(rank, w)})
  > on ({RUN}) group_left ()
  {t.straggler_factor} * quantile by ({RUN}) (0.5, {_mean_step_seconds(rank, w)})
)
or
(
  ({_data_wait_share(rank, w)})
  > on ({RUN}) group_left ()
  ({t.straggler_data_wait_share} + quantile by ({RUN}) (0.5, {_data_wait_share(rank, w)}))
)
""", "15m", "warning",
              "Rank {{ $labels.rank }} of {{ $labels.namespace }}/{{ $labels.job_name }} lags the other ranks",
              f"""Over the last {w} this rank's mean step time is above {t.straggler_factor}x the median rank's, or
              its share of time waiting for data is {t.straggler_data_wait_share} above the median rank's. With a
              synchronous all-reduce every rank waits for the slowest, so the whole job runs at this rank's pace.
              What to check: the node of this rank's pod (CPU contention from input workers, a slow local disk,
              NPU temperature or power throttling), its data shard, `num_parallel_workers`."""),
        _rule("Incv4NonFiniteLoss", f"""
sum by ({rank}) (increase(incv4_nonfinite_loss_steps_total[10m])) > 0
""", "0m", "warning",
              "Non-finite loss in {{ $labels.namespace }}/{{ $labels.job_name }} rank {{ $labels.rank }}",
              """Steps produced NaN or infinite losses in the last 10 minutes; the trainer skips them and stops the
              run as DIVERGED (exit 4) after `max_nonfinite_steps` in a row. What to check: the loss and lr panels
              (a warm-up too short or an lr too high for the global batch), the loss scale under AMP O2/O3,
              corrupt input images; resume from the last checkpoint with a lower lr if it diverged."""),
        _rule("Incv4CheckpointStale", f"""
(time() - max by ({RUN}) (incv4_checkpoint_last_success_timestamp_seconds)) > {t.checkpoint_max_age_minutes * 60}
and on ({RUN})
(time() - max by ({RUN}) (incv4_last_step_timestamp_seconds)) < {t.stall_minutes * 60}
""", "5m", "warning",
              "No checkpoint of {{ $labels.namespace }}/{{ $labels.job_name }} for "
              f"{t.checkpoint_max_age_minutes} minutes",
              f"""Training is progressing but the last successful checkpoint is
              {{{{ $value | humanizeDuration }}}} old, so a failure now loses that much work. What to check: the
              checkpoint failures counter and the worker log around saves, free space and write permission on the
              checkpoint volume, the recipe's checkpoint interval (`ckpt_save_interval`)."""),
        _rule("Incv4CheckpointFailing", f"""
sum by ({rank}) (increase(incv4_checkpoint_failures_total[30m])) > 0
""", "0m", "warning",
              "Checkpoint saves of {{ $labels.namespace }}/{{ $labels.job_name }} fail",
              """A checkpoint save failed in the last 30 minutes (the run goes on with its previous checkpoint).
              What to check: the worker log for the error, free space, quota and permissions of the checkpoint
              volume, whether the volume is mounted read-only."""),
        _rule("Incv4WorkerRestarting", f"""
sum by ({rank}) (increase(incv4_worker_restarts_total[30m])) > {t.restarts_per_30m}
""", "0m", "warning",
              "Rank {{ $labels.rank }} of {{ $labels.namespace }}/{{ $labels.job_name }} keeps restarting",
              f"""The launcher restarted this worker more than {t.restarts_per_30m} times in 30 minutes: a crash
              loop. What to check: the exit reasons (`incv4_worker_exits_total`, restarts panel), the worker log
              before each exit, memory limits (OOM kills show as reason "signal"), NPU health."""),
        _rule("Incv4NPUUnhealthy", f"""
(npu_chip_info_health_status == 0)
* on (pod_name) group_left (job_name)
max by (pod_name, job_name) (label_replace(incv4_build_info, "pod_name", "$1", "pod", "(.+)"))
""", "1m", "critical",
              "NPU {{ $labels.id }} of pod {{ $labels.pod_name }} ({{ $labels.job_name }}) is unhealthy",
              """Ascend npu-exporter reports this chip unhealthy while a training pod uses it. The run will stall or
              fail at its next collective. What to check: `npu-smi info` on the node, the device plugin's and
              npu-exporter's logs, the chip's error code (`npu_chip_info_error_code`), temperature and power; cordon
              the node and let Volcano reschedule the job from its last checkpoint."""),
    ]
    return {"groups": [{"name": "incv4-training", "rules": rules}]}


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
