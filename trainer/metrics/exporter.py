"""Prometheus metrics of a training run (prometheus-client, multiprocess mode).

One HTTP endpoint per pod, served by the LAUNCHER (it outlives its workers), carries every local rank:

- the launcher calls `prepare_multiprocess_dir(path)` before it starts any worker: a fresh, empty directory,
  exported as PROMETHEUS_MULTIPROC_DIR so each worker (a child process) writes its samples to mmap files there;
- the launcher calls `serve(port)`: /metrics merges those files (prometheus_client's MultiProcessCollector) with the
  launcher's own counters (`LauncherMetrics`, kept in the launcher's memory);
- each worker creates one `TrainerMetrics(rank, build_info)` and reports through it.

Without PROMETHEUS_MULTIPROC_DIR (`incv4 train --metrics-port N` alone) the same metrics live in this process and
`serve` exposes them directly.

Multiprocess semantics chosen here:
- counters and histograms are summed over every file in the directory, the files of dead workers included, so a
  worker exiting or restarting never makes a counter go back;
- per-rank gauges use mode 'mostrecent': the newest value written for a rank wins, whichever process wrote it, so
  after a restart the last known loss/step stays visible until the new process reports;
- no 'live*' gauge is used, so `mark_process_dead` has nothing to do and is never needed.

Every name, help text and label comes from the metric table in incv4.trainer.contract (the dashboard, the alerts and
`incv4 status` query the same table); `rank` (the global rank) is on every worker series. The launcher relabels
nothing: the pod's identity (namespace, pod, Volcano job name) is added by the PodMonitor, see charts/incv4.
"""
from __future__ import annotations

import errno
import math
import os
import socket
import socketserver
import threading
import time
from typing import Iterable, Mapping, Optional

from incv4.trainer import contract as M

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Where /metrics listens. A local run (`incv4 train`, `incv4 demo`) serves this machine only: its training details are
# nobody else's business. Only inside a pod (`incv4 launch`) does it listen on every interface, because Prometheus
# and the API server's pod proxy scrape the pod's IP. POD_ADDR is dual-stack: one IPv6 socket with IPV6_V6ONLY off
# takes IPv4 too (as IPv4-mapped addresses), so IPv4, IPv6-only and dual-stack clusters can all scrape it; on a
# kernel without IPv6 it falls back to every IPv4 interface.
LOCAL_ADDR = "127.0.0.1"
POD_ADDR = "::"
IPV4_ANY = "0.0.0.0"

# Step duration buckets: fine around the published recipe's ~81 ms/step on 8 Ascend NPUs, and coarse up to a
# minute so the seconds-long steps of CPU runs still fall in distinct buckets.
STEP_BUCKETS = (0.02, 0.04, 0.06, 0.07, 0.08, 0.09, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 0.75,
                1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
CHECKPOINT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BUCKETS = {M.STEP_DURATION: STEP_BUCKETS, M.CHECKPOINT_DURATION: CHECKPOINT_BUCKETS}


def exit_reason(exit_code: int) -> str:
    """The `reason` label for a worker's exit code (negative = killed by that signal, as subprocess reports it)."""
    if exit_code < 0:
        return M.SIGNAL_REASON
    return M.EXIT_REASONS.get(exit_code, M.OTHER_REASON)


def prepare_multiprocess_dir(path: str) -> str:
    """Launcher, before starting workers: make `path` a fresh, empty multiprocess directory and export
    PROMETHEUS_MULTIPROC_DIR so every child process writes its samples there. Returns the absolute path.

    Only the *.db files prometheus_client writes are removed (a stale run's samples must not leak into this one);
    anything else in the directory is a sign of a wrong path, and is refused."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"metrics directory {path} exists and is not a directory")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if not name.endswith(".db"):
            raise ValueError(f"metrics directory {path} holds {name!r}, not a prometheus_client file; "
                             "choose an empty or dedicated directory")
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
    return path


def _use_multiprocess_values_if_configured() -> None:
    """prometheus_client picks its value class (in-memory or mmap file) when `prometheus_client.values` is first
    imported. A process that imported it before PROMETHEUS_MULTIPROC_DIR was set would keep its samples in memory,
    invisible to the launcher; switch the class before any metric is created so the samples reach the directory."""
    from prometheus_client import values

    if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


class _Families:
    """The metric families a worker reports (contract.METRICS not `by_launcher`), created once per process (a
    registry refuses duplicates). `child(metric, *labels)` is one labelled series."""

    _instance: Optional["_Families"] = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "_Families":
        with cls._lock:
            if cls._instance is None:
                _use_multiprocess_values_if_configured()
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        self._families = {metric: _create(metric, self.registry)
                          for metric in M.METRICS if not metric.by_launcher}

    def child(self, metric: M.Metric, *labels: str):
        return self._families[metric].labels(*labels)


def _create(metric: M.Metric, registry):
    """A prometheus_client family for `metric`. Gauges use multiprocess mode 'mostrecent' (see the module doc)."""
    from prometheus_client import Counter, Gauge, Histogram

    if metric.kind == M.COUNTER:
        return Counter(metric.name, metric.help, metric.labels, registry=registry)
    if metric.kind == M.HISTOGRAM:
        return Histogram(metric.name, metric.help, metric.labels, registry=registry, buckets=BUCKETS[metric])
    return Gauge(metric.name, metric.help, metric.labels, registry=registry, multiprocess_mode="mostrecent")


class TrainerMetrics:
    """One per worker process; `rank` (the global rank) becomes the `rank` label.

    Every label child is resolved once here, so a step costs a few mmap writes and no allocation worth noting.
    Counters start at 0 so rates and alerts see them before the first event."""

    def __init__(self, rank: int, build_info: Mapping[str, str]):
        unknown = sorted(set(build_info) - set(M.BUILD_INFO_LABELS))
        if unknown:
            raise ValueError(f"unknown build_info key(s) {unknown}; allowed: {list(M.BUILD_INFO_LABELS)}")
        self.rank = int(rank)
        fam = _Families.get()
        self.registry = fam.registry
        label = str(self.rank)
        fam.child(M.BUILD_INFO, label, *(str(build_info.get(k, "")) for k in M.BUILD_INFO_LABELS)).set(1)
        self._step_duration = fam.child(M.STEP_DURATION, label)
        self._steps = fam.child(M.STEPS, label)
        self._samples = fam.child(M.SAMPLES, label)
        self._data_wait = fam.child(M.DATA_WAIT, label)
        self._loss = fam.child(M.LOSS, label)
        self._lr = fam.child(M.LEARNING_RATE, label)
        self._top1 = fam.child(M.EVAL_ACCURACY, label, M.TOP1)
        self._top5 = fam.child(M.EVAL_ACCURACY, label, M.TOP5)
        self._global_step = fam.child(M.GLOBAL_STEP, label)
        self._epoch = fam.child(M.EPOCH, label)
        self._planned_steps = fam.child(M.PLANNED_STEPS, label)
        self._steps_per_epoch = fam.child(M.STEPS_PER_EPOCH, label)
        self._last_step = fam.child(M.LAST_STEP_TIMESTAMP, label)
        self._compile_seconds = fam.child(M.GRAPH_COMPILE, label)
        self._checkpoint_last_success = fam.child(M.CHECKPOINT_LAST_SUCCESS, label)
        self._checkpoint_duration = fam.child(M.CHECKPOINT_DURATION, label)
        self._checkpoint_failures = fam.child(M.CHECKPOINT_FAILURES, label)
        self._nonfinite = fam.child(M.NONFINITE_LOSS_STEPS, label)
        self._next_call_includes_compile = False

    def set_planned(self, total_steps: int, steps_per_epoch: int) -> None:
        """Once the data is known: the run's total steps (for progress and ETA) and steps per epoch."""
        self._planned_steps.set(total_steps)
        self._steps_per_epoch.set(steps_per_epoch)

    def compile_finished(self, seconds: float) -> None:
        """Graph build + compile time, measured up to the end of the first step. Call it before that step's
        `steps_done`: that call's steps are counted but kept out of the step-duration histogram, so a 30-60 s
        compile does not pose as a slow step (and skew quantiles, means and the regression alert)."""
        self._compile_seconds.set(seconds)
        self._next_call_includes_compile = True

    def steps_done(self, steps: int, seconds: float, samples: int, data_wait_seconds: float,
                   loss: float, lr: float, global_step: int, epoch: int) -> None:
        """After one step, or after a dataset-sink chunk of `steps` steps taking `seconds` in all (the histogram
        then observes seconds/steps once per step).

        `seconds`: time of those steps from handing the batch over to the loss being ready, input wait excluded;
        `samples`: images THIS rank processed (per-rank batch x steps; img/s sums over ranks);
        `data_wait_seconds`: time spent waiting for the input batches, outside `seconds` (0 in sink mode);
        `global_step`: steps done since the run began (a resumed run continues its count); `epoch`: the epoch
        in progress, 1-based."""
        if steps <= 0:
            return
        if self._next_call_includes_compile:
            self._next_call_includes_compile = False
        else:
            per_step = seconds / steps
            for _ in range(steps):
                self._step_duration.observe(per_step)
        self._steps.inc(steps)
        self._samples.inc(samples)
        if data_wait_seconds > 0:
            self._data_wait.inc(data_wait_seconds)
        self._loss.set(loss)
        self._lr.set(lr)
        self._global_step.set(global_step)
        self._epoch.set(epoch)
        self._last_step.set(time.time())

    def nonfinite_loss(self, steps: int = 1) -> None:
        """`steps` steps produced a NaN/inf loss (the trainer skips them; too many in a row end the run as
        DIVERGED)."""
        self._nonfinite.inc(steps)

    def evaluated(self, top1: float, top5: float) -> None:
        """Validation accuracy as fractions in [0, 1] (a percentage is converted)."""
        self._top1.set(_as_ratio(top1))
        self._top5.set(_as_ratio(top5))

    def checkpoint_saved(self, seconds: float) -> None:
        self._checkpoint_duration.observe(seconds)
        self._checkpoint_last_success.set(time.time())

    def checkpoint_failed(self) -> None:
        self._checkpoint_failures.inc()


def _as_ratio(value: float) -> float:
    value = float(value)
    if math.isfinite(value) and 1.0 < value <= 100.0:
        return value / 100.0
    return value


class LauncherMetrics:
    """Counters the launcher owns (it outlives its workers). Kept in the launcher's memory, not in the multiprocess
    directory, so they do not depend on when prometheus_client was imported; `serve` exposes them.

    `ranks`: the global ranks this launcher supervises; their series are created at 0 so restarts and exits show as
    0 (not as missing) before anything happens."""

    def __init__(self, ranks: Iterable[int] = ()):
        self._lock = threading.Lock()
        self._exits: dict[tuple[str, str], float] = {}
        self._restarts: dict[str, float] = {}
        for rank in ranks:
            self._restarts[str(rank)] = 0.0
            for reason in M.ALL_EXIT_REASONS:
                self._exits[(str(rank), reason)] = 0.0
        _LAUNCHERS.append(self)

    def worker_exited(self, rank: int, exit_code: int) -> None:
        key = (str(rank), exit_reason(exit_code))
        with self._lock:
            self._exits[key] = self._exits.get(key, 0.0) + 1

    def worker_restarted(self, rank: int) -> None:
        """The launcher started `rank` again (`--max-restarts`: the whole local group, so every local rank)."""
        key = str(rank)
        with self._lock:
            self._restarts[key] = self._restarts.get(key, 0.0) + 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        exits = CounterMetricFamily(M.WORKER_EXITS.family, M.WORKER_EXITS.help, labels=M.WORKER_EXITS.labels)
        restarts = CounterMetricFamily(M.WORKER_RESTARTS.family, M.WORKER_RESTARTS.help,
                                       labels=M.WORKER_RESTARTS.labels)
        with self._lock:
            for (rank, reason), value in sorted(self._exits.items()):
                exits.add_metric((rank, reason), value)
            for rank, value in sorted(self._restarts.items()):
                restarts.add_metric((rank,), value)
        return [exits, restarts]


_LAUNCHERS: list[LauncherMetrics] = []


class _LauncherCollector:
    """Exposes the counters of every LauncherMetrics of this process (normally one)."""

    def collect(self):
        families = {}
        for launcher in list(_LAUNCHERS):
            for family in launcher.collect():
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        return list(families.values())


def build_registry():
    """The registry /metrics serves: the multiprocess directory's merged samples (when PROMETHEUS_MULTIPROC_DIR is
    set), or this process's own trainer metrics (when not), plus the launcher's counters."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_LocalTrainerCollector())
    registry.register(_LauncherCollector())
    return registry


class _LocalTrainerCollector:
    def collect(self):
        if _Families._instance is None:
            return []
        return _Families._instance.registry.collect()


class MetricsServer:
    """Handle of a running /metrics endpoint."""

    def __init__(self, httpd, thread):
        self._httpd = httpd
        self._thread = thread
        self.port = httpd.server_address[1]

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = LOCAL_ADDR) -> Optional[MetricsServer]:
    """Launcher (or a lone `incv4 train`): serve /metrics for all local ranks on `port` (0 = off) in a daemon
    thread, on `addr` (loopback unless the caller is a pod's launcher: POD_ADDR, dual-stack). Returns a handle with
    `.shutdown()`, or None when off."""
    if not port:
        return None
    from prometheus_client import start_http_server

    registry = build_registry()
    try:
        if addr == POD_ADDR:
            httpd, thread = _serve_dual_stack(port, registry)
        else:
            httpd, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as err:
        raise OSError(f"cannot serve metrics on port {port}: {err.strerror or err}") from err
    return MetricsServer(httpd, thread)


def _serve_dual_stack(port: int, registry):
    """/metrics on every IPv6 and IPv4 address of the pod; on every IPv4 one where the kernel has no IPv6."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app, start_http_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):  # a scrape every 15 s is not news
            pass

    class DualStackServer(socketserver.ThreadingMixIn, WSGIServer):
        address_family = socket.AF_INET6
        daemon_threads = True

        def server_bind(self):
            # Linux's default (net.ipv6.bindv6only=0) is dual-stack already; say so rather than rely on the sysctl.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    if not socket.has_ipv6:
        return start_http_server(port, addr=IPV4_ANY, registry=registry)
    try:
        httpd = make_server(POD_ADDR, port, make_wsgi_app(registry), DualStackServer, handler_class=QuietHandler)
    except OSError as err:
        if err.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
            raise
        return start_http_server(port, addr=IPV4_ANY, registry=registry)  # IPv6 disabled in this kernel
    thread = threading.Thread(target=httpd.serve_forever, name="incv4-metrics", daemon=True)
    thread.start()
    return httpd, thread
