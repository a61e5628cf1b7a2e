"""Helper (no tests here): a real Prometheus server (Debian's /usr/bin/prometheus) started on a loopback port with a
generated scrape config, queried through its HTTP API, stopped by the test. Used by the dashboard, progress and
metrics e2e tests. Not named test_*.py, so pytest does not collect it as an (empty) test module."""
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

    def __init__(self, workdir, targets, rule_files=(), scrape_interval="1s"):
        self.workdir = workdir
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
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
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
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

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
