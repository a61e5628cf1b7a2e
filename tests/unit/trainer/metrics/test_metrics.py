"""trainer/metrics/exporter.py: real worker processes writing through prometheus_client's multiprocess mode, one
launcher endpoint serving them all, checked by parsing the page and by `promtool check metrics`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from incv4.trainer import contract
from incv4.trainer.metrics import exporter as metrics
from metrics_workers import start_worker, stop_worker
from prometheus_server import free_port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} of a metrics page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def by_rank(page: dict, name: str) -> dict:
    return {dict(labels)["rank"]: v for (n, labels), v in page.items() if n == name}


@pytest.fixture
def endpoint(tmp_path, monkeypatch):
    """A launcher's view: a fresh multiprocess directory (exported to children) and /metrics on a loopback port."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset-by-fixture")  # restored after the test
    metrics.prepare_multiprocess_dir(str(tmp_path / "prom"))
    launcher = metrics.LauncherMetrics(ranks=range(8))
    server = metrics.serve(free_port(), addr="127.0.0.1")
    yield server, launcher
    server.shutdown()
    metrics._LAUNCHERS.remove(launcher)


def test_eight_ranks_behind_one_port_and_counters_survive_a_worker_exit(endpoint):
    server, launcher = endpoint
    workers = {rank: start_worker(rank, steps=5) for rank in range(8)}
    try:
        page = samples(scrape(server.port))
        assert by_rank(page, "incv4_steps_total") == {str(r): 5.0 for r in range(8)}
        assert by_rank(page, "incv4_samples_total") == {str(r): 20.0 for r in range(8)}
        assert by_rank(page, "incv4_step_duration_seconds_count") == {str(r): 4.0 for r in range(8)}
        assert by_rank(page, "incv4_global_step") == {str(r): 5.0 for r in range(8)}
        assert len(by_rank(page, "incv4_build_info")) == 8

        # Rank 3's process exits mid-run: its counters and last gauges stay on the page.
        stop_worker(workers.pop(3))
        launcher.worker_exited(3, 1)
        page = samples(scrape(server.port))
        assert by_rank(page, "incv4_steps_total")["3"] == 5.0
        assert by_rank(page, "incv4_step_duration_seconds_sum")["3"] == pytest.approx(4 * 0.11)
        assert by_rank(page, "incv4_global_step")["3"] == 5.0

        # The launcher restarts it; the new process resumes at global step 5 and does 2 steps. Counters add up
        # over both processes, the gauge shows the newest value.
        launcher.worker_restarted(3)
        workers[3] = start_worker(3, steps=2, start=5)
        page = samples(scrape(server.port))
        assert by_rank(page, "incv4_steps_total")["3"] == 7.0
        assert by_rank(page, "incv4_step_duration_seconds_count")["3"] == 5.0  # 4 + 1 (first steps compile)
        assert by_rank(page, "incv4_global_step")["3"] == 7.0
        assert by_rank(page, "incv4_worker_restarts_total") == {str(r): (1.0 if r == 3 else 0.0) for r in range(8)}
        assert page[("incv4_worker_exits_total", frozenset({("rank", "3"), ("reason", "failure")}))] == 1.0
        assert page[("incv4_worker_exits_total", frozenset({("rank", "3"), ("reason", "ok")}))] == 0.0
        # every rank's series is distinct, and nothing is labelled by step or epoch
        for (name, labels), _ in page.items():
            assert not {"step", "epoch", "pid"} & {k for k, _ in labels}, name
    finally:
        for proc in workers.values():
            stop_worker(proc)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make setup-dev installs it)")
def test_promtool_check_metrics_reports_nothing_on_the_endpoint(endpoint):
    server, launcher = endpoint
    workers = [start_worker(rank, steps=3) for rank in range(2)]
    try:
        launcher.worker_exited(0, -9)
        text = scrape(server.port)
    finally:
        for proc in workers:
            stop_worker(proc)
    assert "incv4_steps_total" in text and "incv4_worker_exits_total" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_sink_chunk_spreads_its_time_over_its_steps():
    m = metrics.TrainerMetrics(101, {"model": "inception_v4"})
    m.steps_done(4, 2.0, 128, 0.2, 1.5, 0.05, 40, 2)
    page = samples(b"".join(_expose(m.registry)).decode())
    rank = frozenset({("rank", "101")})
    assert page[("incv4_step_duration_seconds_count", rank)] == 4.0
    assert page[("incv4_step_duration_seconds_sum", rank)] == pytest.approx(2.0)
    assert page[("incv4_step_duration_seconds_bucket", rank | {("le", "0.5")})] == 4.0
    assert page[("incv4_step_duration_seconds_bucket", rank | {("le", "0.3")})] == 0.0
    assert page[("incv4_steps_total", rank)] == 4.0
    assert page[("incv4_samples_total", rank)] == 128.0
    assert page[("incv4_global_step", rank)] == 40.0
    assert page[("incv4_epoch", rank)] == 2.0
    assert abs(page[("incv4_last_step_timestamp_seconds", rank)] - time.time()) < 60


def test_the_compile_step_is_counted_but_kept_out_of_the_step_histogram():
    m = metrics.TrainerMetrics(105, {})
    m.compile_finished(45.0)
    m.steps_done(1, 45.0, 32, 0.0, 2.3, 0.01, 1, 1)
    m.steps_done(1, 0.08, 32, 0.0, 2.2, 0.01, 2, 1)
    page = samples(b"".join(_expose(m.registry)).decode())
    rank = frozenset({("rank", "105")})
    assert page[("incv4_steps_total", rank)] == 2.0
    assert page[("incv4_step_duration_seconds_count", rank)] == 1.0
    assert page[("incv4_step_duration_seconds_sum", rank)] == pytest.approx(0.08)
    assert page[("incv4_graph_compile_seconds", rank)] == 45.0


def test_accuracy_in_percent_is_stored_as_a_ratio():
    m = metrics.TrainerMetrics(102, {})
    m.evaluated(80.98, 95.25)
    page = samples(b"".join(_expose(m.registry)).decode())
    assert page[("incv4_eval_accuracy_ratio", frozenset({("rank", "102"), ("topk", "1")}))] == pytest.approx(0.8098)
    assert page[("incv4_eval_accuracy_ratio", frozenset({("rank", "102"), ("topk", "5")}))] == pytest.approx(0.9525)


def test_lone_trainer_serves_its_own_metrics(monkeypatch):
    """`incv4 train --metrics-port` without a launcher: no multiprocess directory, the process serves itself."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    m = metrics.TrainerMetrics(103, {"model": "inception_v4"})
    m.steps_done(1, 0.5, 8, 0.0, 2.0, 0.1, 1, 1)
    server = metrics.serve(free_port(), addr="127.0.0.1")
    try:
        page = samples(scrape(server.port))
    finally:
        server.shutdown()
    assert by_rank(page, "incv4_steps_total")["103"] == 1.0


def test_port_zero_turns_serving_off():
    assert metrics.serve(0) is None


def test_unknown_build_info_key_is_refused():
    with pytest.raises(ValueError, match="unknown build_info key.*'modle'"):
        metrics.TrainerMetrics(104, {"modle": "x"})


def test_prepare_multiprocess_dir_empties_stale_files_and_refuses_foreign_ones(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset-by-test")
    path = tmp_path / "prom"
    path.mkdir()
    (path / "counter_123.db").write_bytes(b"stale")
    assert metrics.prepare_multiprocess_dir(str(path)) == str(path)
    assert list(path.iterdir()) == []
    assert os.environ[metrics.MULTIPROC_ENV] == str(path)
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        metrics.prepare_multiprocess_dir(str(path))
    assert (path / "notes.txt").exists()


def test_worker_that_imported_prometheus_client_early_still_writes_to_the_directory(tmp_path):
    """prometheus_client picks file-backed values at import time; TrainerMetrics corrects a too-early import."""
    code = textwrap.dedent(f"""
        import os, prometheus_client
        os.environ["{metrics.MULTIPROC_ENV}"] = {str(tmp_path)!r}
        from incv4.trainer.metrics.exporter import TrainerMetrics
        TrainerMetrics(0, {{}}).steps_done(1, 0.1, 4, 0.0, 1.0, 0.1, 1, 1)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    from prometheus_client.multiprocess import MultiProcessCollector
    merged = {s.name: s.value for f in MultiProcessCollector.merge([str(p) for p in tmp_path.glob("*.db")])
              for s in f.samples if s.labels.get("rank") == "0"}
    assert merged["incv4_steps_total"] == 1.0


@pytest.mark.parametrize("code, reason", [(0, "ok"), (1, "failure"), (2, "usage"), (3, "peer_timeout"),
                                          (4, "diverged"), (143, "terminated"), (-9, "signal"), (77, "other")])
def test_exit_codes_map_to_a_bounded_reason(code, reason):
    assert metrics.exit_reason(code) == reason


def _expose(registry):
    from prometheus_client import generate_latest
    yield generate_latest(registry)


# The published names: dashboards and alerts in the field query them, so a rename must be deliberate.
PUBLISHED_NAMES = (
    "incv4_build_info",
    "incv4_step_duration_seconds",
    "incv4_steps_total",
    "incv4_samples_total",
    "incv4_data_wait_seconds_total",
    "incv4_loss",
    "incv4_learning_rate",
    "incv4_eval_accuracy_ratio",
    "incv4_global_step",
    "incv4_epoch",
    "incv4_planned_steps",
    "incv4_steps_per_epoch",
    "incv4_last_step_timestamp_seconds",
    "incv4_graph_compile_seconds",
    "incv4_checkpoint_last_success_timestamp_seconds",
    "incv4_checkpoint_duration_seconds",
    "incv4_checkpoint_failures_total",
    "incv4_nonfinite_loss_steps_total",
    "incv4_worker_exits_total",
    "incv4_worker_restarts_total",
)


def test_the_contract_lists_the_published_names():
    assert contract.METRIC_NAMES == PUBLISHED_NAMES
    assert all(m.name.endswith("_total") == (m.kind == contract.COUNTER) for m in contract.METRICS)
    assert contract.family_name("incv4_step_duration_seconds_bucket") == "incv4_step_duration_seconds"
    assert contract.family_name("incv4_checkpoint_duration_seconds_count") == "incv4_checkpoint_duration_seconds"
    assert contract.family_name("incv4_steps_total") == "incv4_steps_total"


def test_the_endpoint_exports_exactly_the_contracts_metrics(endpoint):
    """Every metric of the contract's table, with its type, help and labels, and nothing else."""
    server, launcher = endpoint
    launcher.worker_exited(0, 0)
    worker = start_worker(0, steps=2)
    try:
        families = {f.name: f for f in text_string_to_metric_families(scrape(server.port))}
    finally:
        stop_worker(worker)
    assert set(families) == {m.family for m in contract.METRICS}
    for metric in contract.METRICS:
        family = families[metric.family]
        assert (family.type, family.documentation) == (metric.kind, metric.help), metric.name
        labels = {key for sample in family.samples for key in sample.labels if key != "le"}
        assert labels == set(metric.labels), metric.name
