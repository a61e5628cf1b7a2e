"""Helper (no tests here): a real Prometheus server (Debian's /usr/bin/prometheus) started on a loopback port with a
generated scrape config (or none, serving backfilled blocks: `backfill_openmetrics`, `prometheus_on_blocks`),
queried through its HTTP API, stopped by the test. Used by the dashboard, progress and metrics e2e tests and the
`monitoring` bench case. Not named test_*.py, so pytest does not collect it as an (empty) test module."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusError(RuntimeError):
    pass


class PrometheusServer:
    """`targets`: [(host:port, {label: value})] scraped every `scrape_interval` as the job `incv4`, the labels set
    as a PodMonitor with the chart's relabelling would set them (namespace, pod, job_name)."""

    def __init__(self, workdir, targets, rule_files=(), scrape_interval="1s", extra_args=()):
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.request_timeout = 30  # seconds an API call may take (a bench over a large TSDB raises it)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{
                "job_name": "incv4",
                "static_configs": [{"targets": [t], "labels": dict(labels)} for t, labels in targets],
            }],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=60):
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", *self.extra_args],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.3)
        raise PrometheusError("prometheus did not become ready")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def api(self, path, **params):
        """GET /api/v1/<path>; returns `data`, raises PrometheusError with Prometheus' error text."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=self.request_timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query_with_stats(self, expr, at=None, start=None, end=None, step=None):
        """An instant query (`at`) or, with start/end/step, a range query, asking for Prometheus' query statistics
        (`stats=all`: timings in seconds, samples loaded). Returns (data, wall seconds of the HTTP round trip)."""
        params = {"query": expr, "stats": "all"}
        if start is not None:
            params.update(start=f"{start:.3f}", end=f"{end:.3f}", step=step)
            path = "query_range"
        else:
            path = "query"
            if at is not None:
                params["time"] = f"{at:.3f}"
        began = time.perf_counter()
        data = self.api(path, **params)
        return data, time.perf_counter() - began

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def label_values(self, label, selector, start, end):
        return self.api(f"label/{label}/values", **{"match[]": selector, "start": f"{start:.3f}",
                                                    "end": f"{end:.3f}"})

    def wait_for(self, expr, timeout=60, condition=lambda result: bool(result)):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if condition(result):
                return result
            time.sleep(0.5)
        raise PrometheusError(f"timed out waiting for {expr}")


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def backfill_openmetrics(openmetrics_path, tsdb_dir, timeout=3600):
    """`promtool tsdb create-blocks-from openmetrics`: the samples of one OpenMetrics file (each series' samples in
    time order, ending in `# EOF`) become TSDB blocks in `tsdb_dir`. Several files may go into one directory, one
    after the other, when their time ranges do not overlap. Returns promtool's block table."""
    result = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics_path),
                             str(tsdb_dir)], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise PrometheusError(f"promtool backfill of {openmetrics_path}: {result.stderr[-2000:]}")
    return result.stdout


def backfill_rules(prom, rule_file, start, end, tsdb_dir, eval_interval="1m", timeout=3600):
    """`promtool tsdb create-blocks-from rules`: the recording rules of `rule_file` evaluated by the running `prom`
    over [start, end] (unix seconds), written as blocks into `tsdb_dir`, so recorded series have the history that
    backfilled raw samples have. Restart `prom` on a directory holding those blocks to query them."""
    result = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "rules", f"--url={prom.url}",
                             f"--start={int(start)}", f"--end={int(end)}", f"--eval-interval={eval_interval}",
                             f"--output-dir={tsdb_dir}", str(rule_file)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise PrometheusError(f"promtool rules backfill of {rule_file}: {result.stdout[-1000:]}{result.stderr[-2000:]}")
    return result.stdout


def prometheus_on_blocks(workdir, rule_files=(), evaluation_interval="1m", compact=True):
    """A PrometheusServer that scrapes nothing and serves the TSDB in `workdir/tsdb` (e.g. blocks made by
    `backfill_openmetrics`), with retention long enough that old backfilled blocks are not deleted on start.
    `compact=False` keeps the blocks as they are (no background compaction rewriting the folder)."""
    frozen = [] if compact else ["--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"]
    return PrometheusServer(workdir, [], rule_files=rule_files, scrape_interval=evaluation_interval,
                            extra_args=["--storage.tsdb.retention.time=100y", *frozen])
