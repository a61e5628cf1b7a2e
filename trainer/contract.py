"""What the cluster side (operator/, the chart, the dashboard and alerts) and the in-pod side (trainer/) share:
exit codes, ports, the Volcano task name, the launcher's grace period, the metrics and their labels. Importable
without MindSpore or the kubernetes client; every other module takes these values from here, so each is spelled once
(the chart reads them from charts/incv4/files/contract.json, generated from this module)."""
from dataclasses import dataclass
from typing import Tuple

# -- exit codes of `incv4 launch`, `incv4 train` and each worker (docs/exit-codes.md) -----------------------------
# Volcano's policies (operator/render.py, the chart) abort the job on a permanent code, restart it on any other failure.
OK = 0
# Retryable: something went wrong that a restart may cure (a worker crashed, a node was lost).
FAILURE = 1
# Permanent: bad flags, a bad recipe, missing data. Restarting changes nothing.
USAGE = 2
# Retryable: the cluster did not form (peers never arrived, the scheduler was unreachable) within the timeout.
PEER_TIMEOUT = 3
# Permanent: training diverged (too many non-finite losses in a row).
DIVERGED = 4
# Retryable: stopped by SIGTERM (preemption, `incv4 suspend`, pod deletion) after saving a checkpoint.
TERMINATED = 143

PERMANENT = (USAGE, DIVERGED)

# -- ports --------------------------------------------------------------------------------------------------------
# /metrics of a pod (and of a local run); 0 on the command line turns it off. The pod port is named METRICS_PORT_NAME
# so the PodMonitor and `incv4 status` find it by name.
METRICS_PORT = 9400
METRICS_PORT_NAME = "metrics"
# MindSpore's scheduler on node 0 (msrun's --master_port default).
MASTER_PORT = 8118

# -- the Volcano Job ----------------------------------------------------------------------------------------------
# The one task of the Job; Volcano names pods `<job>-<task>-<index>` and its env plugin sets VC_<TASK>_* variables.
TASK_NAME = "worker"
# Worker processes `incv4 launch` starts on a node unless told otherwise: one per NPU of a full 8-NPU node.
DEFAULT_LOCAL_WORKERS = 8
# Seconds `incv4 launch` gives its workers between forwarding SIGTERM and SIGKILL, so they can save a checkpoint.
# The pod's terminationGracePeriodSeconds must outlast it (operator/spec.py).
LAUNCH_GRACE_PERIOD = 30
# Set by the launcher (and the single-process guard) to a file where each worker's datasets record what they read,
# so a decoder crash can be replayed to name the image (trainer/launcher/supervisor.py, trainer/data/pipeline.py).
DATA_TRAIL_ENV = "INCV4_DATA_TRAIL"

# -- metrics ------------------------------------------------------------------------------------------------------
# What a pod's /metrics exports (trainer/metrics/exporter.py creates its families from this table) and what the
# dashboard, the alerts and `incv4 status` query. Names: `incv4_` prefix, base units, `_total` on counters; never step
# or epoch as a label.

# Labels the trainer sets.
RANK = "rank"    # the global rank, on every worker series
TOPK = "topk"    # on the accuracy gauge: TOP1 or TOP5
TOP1, TOP5 = "1", "5"
REASON = "reason"  # the class of a worker's exit code, on the exits counter
# Labels of the build-info gauge besides `rank`, in order; the trainer passes them as a mapping (a missing one is
# exported as "").
WORLD_SIZE = "world_size"
BUILD_INFO_LABELS = ("model", "mindspore_version", WORLD_SIZE, "batch_size", "recipe")

# Labels the Prometheus Operator's PodMonitor gives every scraped series: it adds `namespace` and `pod`, and the
# chart's relabelling adds `job_name` (the Volcano job, from the pod label volcano.sh/job-name; `job` is Prometheus'
# own scrape-job label). A run is identified by RUN_LABELS.
NAMESPACE = "namespace"
POD = "pod"
JOB_NAME = "job_name"
RUN_LABELS = (NAMESPACE, JOB_NAME)

# Values of `reason`: a bounded set, never the raw exit code. A negative code (killed by a signal, as subprocess
# reports it) is SIGNAL_REASON; a code not listed here is OTHER_REASON.
EXIT_REASONS = {
    OK: "ok",
    FAILURE: "failure",
    USAGE: "usage",
    PEER_TIMEOUT: "peer_timeout",
    DIVERGED: "diverged",
    TERMINATED: "terminated",
}
SIGNAL_REASON = "signal"
OTHER_REASON = "other"
ALL_EXIT_REASONS = tuple(EXIT_REASONS.values()) + (SIGNAL_REASON, OTHER_REASON)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class Metric:
    """One metric family. `name` is the series name a query uses (counters end in `_total`); formatting a Metric
    gives its name, so PromQL reads f"rate({STEPS}[5m])". Workers report their metrics through the multiprocess
    directory; the `by_launcher` ones are the launcher's own, kept in its memory."""

    name: str
    kind: str
    help: str
    labels: Tuple[str, ...] = (RANK,)
    by_launcher: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def family(self) -> str:
        """The family name prometheus_client's parser reports: a counter's without `_total`."""
        return self.name[: -len("_total")] if self.kind == COUNTER else self.name

    @property
    def sum(self) -> str:
        return f"{self.name}_sum"

    @property
    def count(self) -> str:
        return f"{self.name}_count"

    @property
    def bucket(self) -> str:
        return f"{self.name}_bucket"


BUILD_INFO = Metric("incv4_build_info", GAUGE, "Constant 1, labelled with what this rank runs.",
                    (RANK,) + BUILD_INFO_LABELS)
STEP_DURATION = Metric("incv4_step_duration_seconds", HISTOGRAM,
                       "Seconds per training step, from handing the batch to the network to the loss being ready "
                       "(input wait excluded, compile step excluded).")
STEPS = Metric("incv4_steps_total", COUNTER, "Training steps this rank finished.")
SAMPLES = Metric("incv4_samples_total", COUNTER, "Training images this rank processed.")
DATA_WAIT = Metric("incv4_data_wait_seconds_total", COUNTER, "Seconds this rank waited for input batches.")
LOSS = Metric("incv4_loss", GAUGE, "Training loss of the last step.")
LEARNING_RATE = Metric("incv4_learning_rate", GAUGE, "Learning rate of the last step.")
EVAL_ACCURACY = Metric("incv4_eval_accuracy_ratio", GAUGE, "Validation accuracy (0-1) of the last evaluation.",
                       (RANK, TOPK))
GLOBAL_STEP = Metric("incv4_global_step", GAUGE, "Global step reached (steps done since the run began).")
EPOCH = Metric("incv4_epoch", GAUGE, "Epoch in progress (1-based).")
PLANNED_STEPS = Metric("incv4_planned_steps", GAUGE, "Total steps the run plans to do.")
STEPS_PER_EPOCH = Metric("incv4_steps_per_epoch", GAUGE, "Steps in one epoch.")
LAST_STEP_TIMESTAMP = Metric("incv4_last_step_timestamp_seconds", GAUGE, "Unix time of the last finished step.")
GRAPH_COMPILE = Metric("incv4_graph_compile_seconds", GAUGE,
                       "Seconds spent building and compiling the graph before the first step.")
CHECKPOINT_LAST_SUCCESS = Metric("incv4_checkpoint_last_success_timestamp_seconds", GAUGE,
                                 "Unix time of the last checkpoint saved successfully.")
CHECKPOINT_DURATION = Metric("incv4_checkpoint_duration_seconds", HISTOGRAM, "Seconds taken to write a checkpoint.")
CHECKPOINT_FAILURES = Metric("incv4_checkpoint_failures_total", COUNTER, "Checkpoint saves that failed.")
NONFINITE_LOSS_STEPS = Metric("incv4_nonfinite_loss_steps_total", COUNTER, "Steps whose loss was NaN or infinite.")
WORKER_EXITS = Metric("incv4_worker_exits_total", COUNTER, "Worker processes that exited, by exit reason.",
                      (RANK, REASON), by_launcher=True)
WORKER_RESTARTS = Metric("incv4_worker_restarts_total", COUNTER, "Worker processes the launcher restarted.",
                         by_launcher=True)

# Every metric a pod exports, in the order of its /metrics page.
METRICS = (BUILD_INFO, STEP_DURATION, STEPS, SAMPLES, DATA_WAIT, LOSS, LEARNING_RATE, EVAL_ACCURACY, GLOBAL_STEP,
           EPOCH, PLANNED_STEPS, STEPS_PER_EPOCH, LAST_STEP_TIMESTAMP, GRAPH_COMPILE, CHECKPOINT_LAST_SUCCESS,
           CHECKPOINT_DURATION, CHECKPOINT_FAILURES, NONFINITE_LOSS_STEPS, WORKER_EXITS, WORKER_RESTARTS)
METRIC_NAMES = tuple(m.name for m in METRICS)


def family_name(series_name: str) -> str:
    """The metric a series name belongs to (a histogram's `_bucket`, `_count`, `_sum` suffix removed)."""
    for suffix in ("_bucket", "_count", "_sum"):
        if series_name.endswith(suffix) and series_name[: -len(suffix)] in METRIC_NAMES:
            return series_name[: -len(suffix)]
    return series_name
