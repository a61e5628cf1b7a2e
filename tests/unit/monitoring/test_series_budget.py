"""The series a pod exports stay few and their labels bounded: what a 1,024-rank job costs Prometheus grows with the
ranks only (bench case `monitoring` measures that job). The pod's /metrics comes from the real exporter in
multiprocess mode, as in a pod, with 8 ranks that went through every reporting call at least once."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from incv4.trainer import contract as M
from incv4.trainer.metrics.exporter import BUCKETS

POD = textwrap.dedent("""
    import sys
    from incv4.trainer.metrics import exporter as m
    from prometheus_client import generate_latest
    m.prepare_multiprocess_dir(sys.argv[1])  # the test's own folder (tmp_path)
    launcher = m.LauncherMetrics(ranks=range(8))
    for rank in range(8):
        t = m.TrainerMetrics(rank, {"model": "inception_v4", "mindspore_version": "2.10.0", "world_size": "8",
                                    "batch_size": "32", "recipe": "r"})
        t.set_planned(100, 10)
        t.compile_finished(1.0)
        for step in range(1, 4):
            t.steps_done(1, 0.1 * step, 32, 0.01, 2.0, 0.1, step, 1)
        t.evaluated(0.1, 0.3)
        t.checkpoint_saved(1.0)
        t.checkpoint_failed()
        t.nonfinite_loss()
        launcher.worker_exited(rank, -9)
        launcher.worker_restarted(rank)
    sys.stdout.write(generate_latest(m.build_registry()).decode())
""")
PER_RANK = 64   # the budget the bench measured with; a new series per rank must be a decision, not an accident


def pod_samples(folder):
    out = subprocess.run([sys.executable, "-c", POD, str(folder)], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return [sample for family in text_string_to_metric_families(out) for sample in family.samples]


def test_a_pod_of_8_ranks_exports_a_fixed_number_of_series_per_rank(tmp_path):
    samples = pod_samples(tmp_path)
    per_rank = Counter(sample.labels[M.RANK] for sample in samples)
    assert per_rank == {str(rank): PER_RANK for rank in range(8)}
    histogram_series = {metric: len(buckets) + 1 + 2 for metric, buckets in BUCKETS.items()}  # +Inf, _sum, _count
    assert PER_RANK == (sum(histogram_series.values()) + len(M.ALL_EXIT_REASONS) + 1  # exits by reason, top-5
                        + len([m for m in M.METRICS if m.kind != M.HISTOGRAM]) - 1)


def test_every_label_is_bounded(tmp_path):
    """No label takes a value per step, epoch, time or message: each comes from a fixed set or is the rank."""
    allowed = {M.RANK: {str(rank) for rank in range(8)}, M.TOPK: {M.TOP1, M.TOP5},
               M.REASON: set(M.ALL_EXIT_REASONS),
               "le": {str(b) for buckets in BUCKETS.values() for b in buckets} | {"+Inf"}}
    build_info = set(M.BUILD_INFO_LABELS)
    for sample in pod_samples(tmp_path):
        for label, value in sample.labels.items():
            if label in build_info:
                assert sample.name == M.BUILD_INFO.name, (sample.name, label)  # fixed for the whole run
                continue
            assert label in allowed, (sample.name, label)
            assert value in allowed[label], (sample.name, label, value)
