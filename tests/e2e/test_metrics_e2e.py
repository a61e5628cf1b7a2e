"""End to end: a real Prometheus server (started here from /usr/bin/prometheus on a loopback
port, with a generated scrape config carrying the labels the chart's PodMonitor sets) scrapes the launcher of a
real 2-worker CPU training run (InceptionV4, MindSpore's collectives). Afterwards, every dashboard query over incv4's
metrics returns data through Prometheus' HTTP API, the queries over other exporters' series are accepted, the alert
rules evaluate, and the recorded step counter equals the steps each rank logged.

Heavy (2 MindSpore workers + scheduler, a few minutes): run it alone,
`flock /tmp/incv4-heavy.lock pytest -m e2e tests/e2e/test_metrics_e2e.py`.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from incv4.operator.monitoring import dashboard
from monitoring_checks import check_dashboard
from prometheus_server import PrometheusServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("prometheus") is None,
                                                   reason="prometheus not installed (make setup-dev)")]

WORKERS = 2
EPOCHS = 2
RUN_LIMIT = 900  # seconds: only so a broken run fails the test instead of hanging the suite


def test_prometheus_scrapes_a_real_two_worker_run(tmp_path, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    data = tmp_path / "data"
    write_demo_dataset(str(data), num_classes=10, train_per_class=8, val_per_class=4, image_size=96)
    logs, ckpt = tmp_path / "logs", tmp_path / "ckpt"
    metrics_port = free_port()
    labels = {"namespace": "team-a", "pod": "run1-worker-0", "job_name": "run1"}
    rules = repo_root / "charts" / "incv4" / "files" / "incv4-alerts.rules.yaml"
    recipe = repo_root / "configs" / "inception_v4_cpu_demo.yaml"
    cmd = [sys.executable, "-m", "incv4.trainer.launcher.launch", "-c", str(recipe),
           "--data-dir", str(data), "--set", f"epoch_size={EPOCHS}", "--set", f"ckpt_save_dir={ckpt}",
           "--set", "batch_size=4",
           "--local-workers", str(WORKERS), "--nodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "--log-dir", str(logs), "--metrics-port", str(metrics_port)]

    with PrometheusServer(tmp_path, [(f"127.0.0.1:{metrics_port}", labels)], rule_files=[rules]) as prom:
        started = time.time()
        with open(tmp_path / "launch.log", "w") as out:
            launcher = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, cwd=tmp_path)  # MindSpore writes rank_*/ in the cwd
            page = ""
            try:
                while launcher.poll() is None:  # keep the launcher's latest page for promtool
                    if time.time() - started > RUN_LIMIT:
                        pytest.fail(f"training still running after {RUN_LIMIT}s")
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                            text = resp.read().decode()
                        if "incv4_steps_total" in text:
                            page = text
                    except OSError:
                        pass
                    time.sleep(2)
            finally:
                if launcher.poll() is None:
                    os.killpg(launcher.pid, signal.SIGKILL)
                    launcher.wait()
        output = (tmp_path / "launch.log").read_text(errors="replace")
        assert launcher.returncode == 0, output[-3000:]
        ended = time.time()

        assert page, "never read a metrics page with training steps from the launcher"
        check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
        assert (check.returncode, check.stdout, check.stderr) == (0, "", ""), page

        # the moment of the last successful scrape: the run's final state as Prometheus recorded it
        up = prom.api("query_range", query='up{job="incv4"}', start=f"{started:.3f}", end=f"{ended + 2:.3f}",
                      step="1")["result"]
        scraped = [float(t) for t, v in up[0]["values"] if v == "1"]
        assert scraped, "Prometheus never scraped the launcher"
        at = scraped[-1]

        # rank 0 logs the run's progress; data-parallel ranks step in lockstep, so every rank ran that many steps
        text = (logs / "worker_0.log").read_text(errors="replace")
        finished = re.findall(r"training finished: (\d+) steps", text)
        assert finished, f"rank 0 did not log its steps:\n{text[-2000:]}"
        logged = {str(rank): int(finished[-1]) for rank in range(WORKERS)}

        recorded = {r["metric"]["rank"]: int(float(r["value"][1]))
                    for r in prom.query('incv4_steps_total{job_name="run1"}', at=at)}
        assert recorded == logged

        problems = check_dashboard(prom, dashboard.build(), "team-a", "run1", at=at)
        assert not problems, "\n".join(problems)

        groups = prom.api("rules")["groups"]
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

        # the per-rank contract of the counters the dashboard sums: images THIS rank processed, epochs 1-based
        samples = {r["metric"]["rank"]: float(r["value"][1])
                   for r in prom.query('incv4_samples_total{job_name="run1"}', at=at)}
        batch = 4  # per rank (set above)
        assert samples == {rank: steps * batch for rank, steps in logged.items()}, \
            "incv4_samples_total must count this rank's images (steps x per-rank batch)"
        assert prom.query('max(incv4_epoch{job_name="run1"})', at=at)[0]["value"][1] == str(EPOCHS)
