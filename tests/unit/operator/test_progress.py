"""operator/progress.py over real metrics pages (light worker processes using TrainerMetrics behind a launcher
endpoint), over a real Prometheus scraping them, and through `incv4 status` against the stand-in API server."""
from __future__ import annotations

import shutil
import urllib.request

import pytest
from click.testing import CliRunner

from incv4.operator import progress
from incv4.trainer.metrics import exporter as metrics
from metrics_workers import start_worker, stop_worker
from prometheus_server import PrometheusServer, free_port

STEPS = 6  # each light worker: 6 steps of 4 images, the first one compiling; see tests/support/metrics_workers.py


@pytest.fixture(scope="module")
def live_page(tmp_path_factory):
    """A launcher endpoint with 2 live light workers (ranks 0 and 1 of a world of 8): (port, page text)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(metrics.MULTIPROC_ENV, "unset-by-fixture")
    metrics.prepare_multiprocess_dir(str(tmp_path_factory.mktemp("prom")))
    launcher = metrics.LauncherMetrics(ranks=range(2))
    server = metrics.serve(free_port(), addr="127.0.0.1")
    workers = [start_worker(rank, steps=STEPS) for rank in range(2)]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as resp:
            yield server.port, resp.read().decode()
    finally:
        for proc in workers:
            stop_worker(proc)
        server.shutdown()
        metrics._LAUNCHERS.remove(launcher)
        mp.undo()


def expected_images_per_second():
    # per rank: 4 images per step; time per step = mean histogram step (the compile step left out) + wait per step
    per_rank = []
    for rank in range(2):
        step_seconds = 0.08 + 0.01 * rank
        per_rank.append(4 / (step_seconds + 0.001))
    return sum(per_rank) * 8 / 2  # 2 ranks read, world size 8


def test_progress_from_a_real_metrics_page(live_page):
    _, page = live_page
    p = progress.from_metrics_text(page)
    assert (p.step, p.planned_steps, p.epoch, p.ranks, p.world_size) == (STEPS, 100, 1, 2, 8)
    assert p.loss == pytest.approx(2.0 - 0.01 * (STEPS - 1))   # rank 0's last loss
    assert (p.top1, p.top5) == (0.25, 0.75)
    assert p.images_per_second == pytest.approx(expected_images_per_second())
    # ETA: remaining steps x global images per step / img/s
    assert p.eta_seconds == pytest.approx((100 - STEPS) * 4 * 8 / expected_images_per_second())
    assert 0 <= p.last_step_age_seconds < 120
    assert set(p.as_dict()) >= {"step", "planned_steps", "epoch", "images_per_second", "loss", "top1", "eta_seconds"}


def test_pages_of_several_pods_merge(live_page):
    _, page = live_page
    other_pod = page.replace('rank="0"', 'rank="8"').replace('rank="1"', 'rank="9"')
    p = progress.from_metrics_text([page, other_pod])
    assert p.ranks == 4 and p.step == STEPS
    assert p.images_per_second == pytest.approx(expected_images_per_second())  # same per-rank speed, 8 ranks


def test_rate_between_two_reads(live_page):
    _, page = live_page
    first = progress.from_metrics_text(page, now=1000.0)
    before = f'incv4_samples_total{{rank="0"}} {4.0 * STEPS}'
    more = page.replace(before, f'incv4_samples_total{{rank="0"}} {4.0 * STEPS + 40}')
    assert more != page
    second = progress.from_metrics_text(more, previous=first, now=1010.0)
    assert second.images_per_second == pytest.approx(40 / 10 * 8 / 2)


@pytest.mark.parametrize("text, message", [
    ("# HELP up x\n# TYPE up gauge\nup 1\n", "no incv4 metrics"),
    ("<html>not metrics</html>\n", "not a Prometheus metrics page|no incv4 metrics"),
])
def test_pages_without_incv4_metrics_are_a_one_line_error(text, message):
    with pytest.raises(progress.ProgressError, match=message):
        progress.from_metrics_text(text)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (make setup-dev)")
def test_progress_from_a_real_prometheus(live_page, tmp_path):
    port, _ = live_page
    labels = {"namespace": "team-a", "pod": "run1-worker-0", "job_name": "run1"}
    with PrometheusServer(tmp_path, [(f"127.0.0.1:{port}", labels)]) as prom:
        prom.wait_for('count_over_time(incv4_global_step{job_name="run1"}[1m]) >= 3')
        p = progress.from_prometheus(prom.url, "team-a", "run1")
        assert (p.step, p.planned_steps, p.epoch, p.ranks, p.world_size) == (STEPS, 100, 1, 2, 8)
        assert p.loss == pytest.approx(2.0 - 0.01 * (STEPS - 1))
        assert (p.top1, p.top5) == (0.25, 0.75)
        assert p.images_per_second == 0.0  # the light workers stopped stepping: no images in the window
        assert p.eta_seconds is None       # no step rate, no ETA
        with pytest.raises(progress.ProgressError, match="no incv4 metrics for job 'other'"):
            progress.from_prometheus(prom.url, "team-a", "other")


def test_unreachable_or_malformed_prometheus_url_is_a_one_line_error():
    with pytest.raises(progress.ProgressError, match="must start with http"):
        progress.from_prometheus("localhost:9090", "ns", "job")
    with pytest.raises(progress.ProgressError, match="cannot reach Prometheus"):
        progress.from_prometheus(f"http://127.0.0.1:{free_port()}", "ns", "job", timeout=2)


def test_incv4_status_shows_progress_from_a_pods_metrics_page(live_page, tmp_path):
    """`incv4 status` against the stand-in API server reads a real metrics page through the pod proxy."""
    from fake_apiserver import FakeApiServer
    from incv4.operator.cli import main

    _, page = live_page
    with FakeApiServer() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
        pod_spec = {"containers": [{"name": "trainer", "ports": [{"name": "metrics", "containerPort": 9400}]}]}
        api.add_job({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                     "metadata": {"name": "run1", "namespace": "team-a"},
                     "spec": {"minAvailable": 1, "tasks": [{"name": "worker", "replicas": 1,
                                                            "template": {"spec": pod_spec}}]}}, phase="Running")
        api.pods[("team-a", "run1-worker-0")]["status"]["phase"] = "Running"
        api.metrics[("team-a", "run1-worker-0", 9400)] = page
        result = CliRunner().invoke(main, ["status", "run1", "--kubeconfig", kubeconfig, "-n", "team-a"])
    assert api.handler_errors == []
    assert result.exit_code == 0, result.output
    assert f"step {STEPS}/100" in result.output
    assert "epoch 1" in result.output
    assert f"loss {2.0 - 0.01 * (STEPS - 1):.4f}" in result.output
    assert "top-1 0.2500" in result.output
