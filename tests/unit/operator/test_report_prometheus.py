"""`incv4 report --job`: a job's curves read from a real Prometheus holding generated samples (OpenMetrics made
from a simulated run, 2 ranks scraped every 15 s, loaded with `promtool tsdb create-blocks-from openmetrics`): one
point per global step a scrape saw, one per evaluation at its epoch, the summary from the build info; and the
one-line refusals."""
from __future__ import annotations

import math
import shutil
import time

import pytest
from click.testing import CliRunner

from incv4.operator.cli import main
from incv4.operator.report.data import ReportError
from incv4.operator.report.prometheus_source import from_prometheus
from incv4.trainer import contract as M

pytest.importorskip("matplotlib")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                      reason="prometheus not installed (make setup-dev)")

NAMESPACE, JOB = "training", "imagenet"
RANKS, BATCH, STEPS_PER_EPOCH, EPOCHS = 2, 8, 10, 4
STEP_S, EVAL_S, SCRAPE_S, LEAD_S, TAIL_S = 6, 10, 15, 30, 60
ACCURACY = {1: (0.25, 0.5), 2: (0.375, 0.625), 3: (0.5, 0.75), 4: (0.625, 0.875)}


def _timeline():
    """[(second since the pod started, state)] every second: steps done, epoch gauge, evaluations done."""
    states, steps, epoch, evals, second = [], 0, 0, 0, LEAD_S
    states += [(s, (0, 0, 0)) for s in range(LEAD_S)]
    while steps < STEPS_PER_EPOCH * EPOCHS:
        second += STEP_S
        steps, epoch = steps + 1, (steps // STEPS_PER_EPOCH) + 1
        states.append((second, (steps, epoch, evals)))
        if steps % STEPS_PER_EPOCH == 0:
            second += EVAL_S
            evals += 1
            states.append((second, (steps, epoch, evals)))
    return states, second + TAIL_S


def _scrapes():
    """[(second, steps, epoch, evaluations)] as a 15 s scrape sees them."""
    states, end = _timeline()
    out, index, state = [], 0, (0, 0, 0)
    for second in range(0, end, SCRAPE_S):
        while index < len(states) and states[index][0] <= second:
            state = states[index][1]
            index += 1
        out.append((second, *state))
    return out


def _series(rank: int, steps: int, epoch: int, evals: int) -> dict:
    top1, top5 = ACCURACY.get(evals, (0.0, 0.0))
    return {
        f'{M.GLOBAL_STEP}{{_}}': steps, f'{M.EPOCH}{{_}}': epoch, f'{M.STEPS.name}{{_}}': steps,
        f'{M.SAMPLES.name}{{_}}': steps * BATCH, f'{M.DATA_WAIT.name}{{_}}': steps * 0.01,
        f'{M.LOSS}{{_}}': 2.0 / steps if steps else 0.0, f'{M.LEARNING_RATE}{{_}}': 0.001 * steps,
        f'{M.PLANNED_STEPS}{{_}}': STEPS_PER_EPOCH * EPOCHS,
        f'{M.EVAL_ACCURACY}{{_,{M.TOPK}="{M.TOP1}"}}': top1, f'{M.EVAL_ACCURACY}{{_,{M.TOPK}="{M.TOP5}"}}': top5,
        f'{M.BUILD_INFO}{{_,model="inception_v4",mindspore_version="2.10.0",{M.WORLD_SIZE}="{RANKS}",'
        f'batch_size="{BATCH}",recipe="demo"}}': 1,
    }


def _openmetrics(started: float) -> str:
    lines = {}
    for second, steps, epoch, evals in _scrapes():
        for rank in range(RANKS):
            target = (f'{M.NAMESPACE}="{NAMESPACE}",{M.JOB_NAME}="{JOB}",pod="{JOB}-worker-{rank}",'
                      f'{M.RANK}="{rank}"')
            for name, value in _series(rank, steps, epoch, evals).items():
                series = name.replace("{_}", "{" + target + "}").replace("{_,", "{" + target + ",")
                lines.setdefault(series, []).append(f"{value} {started + second:.0f}")
    text = "".join(f"{name} {sample}\n" for name, samples in lines.items() for sample in samples)
    return text + "# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    from prometheus_server import backfill_openmetrics, prometheus_on_blocks

    work = tmp_path_factory.mktemp("report-prometheus")
    started = math.floor(time.time() / 7200) * 7200 - 7200  # a whole past 2 h block
    (work / "job.om").write_text(_openmetrics(started))
    backfill_openmetrics(work / "job.om", work / "tsdb")
    with prometheus_on_blocks(work) as prom:
        yield prom


def _expected_steps() -> list:
    return sorted({steps for _, steps, _, _ in _scrapes() if steps > 0})


@needs_prometheus
def test_the_job_curves_come_from_prometheus_one_point_per_step_seen_and_per_evaluation(prometheus):
    report = from_prometheus(prometheus.url, NAMESPACE, JOB)
    steps = _expected_steps()
    assert report.points("loss") == [(s, pytest.approx(2.0 / s)) for s in steps]
    assert report.points("lr") == [(s, pytest.approx(0.001 * s)) for s in steps]
    assert report.points("top1") == [(epoch, top1) for epoch, (top1, _) in ACCURACY.items()]
    assert report.points("top5") == [(epoch, top5) for epoch, (_, top5) in ACCURACY.items()]
    speeds = [v for _, v in report.points("img_per_s")]
    assert speeds and all(0 < v <= RANKS * BATCH / STEP_S + 1e-9 for v in speeds)
    waits = [v for _, v in report.points("data_wait_s")]
    assert waits and all(v == pytest.approx(0.01) for v in waits)  # per step, each rank
    assert report.global_batch == RANKS * BATCH and report.last_step == report.planned_steps == 40
    assert report.recipe["recipe"] == "demo"


@needs_prometheus
def test_report_job_writes_the_page(prometheus, tmp_path):
    out = tmp_path / "job.html"
    result = CliRunner().invoke(main, ["report", "--job", JOB, "-n", NAMESPACE, "--prometheus", prometheus.url,
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert f"data-points='{{&quot;loss&quot;: {len(_expected_steps())}}}'" in page
    assert "<th>best top-1</th><td>62.50%</td>" in page


@needs_prometheus
def test_a_job_prometheus_has_no_data_for_is_one_line_and_exit_1(prometheus, tmp_path):
    result = CliRunner().invoke(main, ["report", "--job", "other", "-n", NAMESPACE, "--prometheus",
                                       prometheus.url, "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert result.output == (f"error: Prometheus at {prometheus.url} has no incv4 metrics for job 'other' in "
                             f"namespace '{NAMESPACE}' in the last 30d\n")
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("url, job, since, code, message", [
    ("ftp://x", JOB, "30d", 2, "--prometheus URL must start with http:// or https://"),
    ("http://127.0.0.1:9", 'x"}) or vector(1', "30d", 2, "is not a Kubernetes object name"),
    ("http://127.0.0.1:9", JOB, "forever", 2, "--since 'forever': give a Prometheus duration"),
    ("http://127.0.0.1:9", JOB, "30d", 1, "cannot reach Prometheus at http://127.0.0.1:9"),
])
def test_bad_input_is_one_line(url, job, since, code, message):
    with pytest.raises(ReportError, match=message) as caught:
        from_prometheus(url, NAMESPACE, job, since=since, timeout=5)
    assert caught.value.exit_code == code
