"""tests/support/prometheus_server.py's OpenMetrics -> promtool blocks -> Prometheus helper (the bench's monitoring
case and report tests build on it): samples written as OpenMetrics come back from the real server's API, at their
own timestamps, with query statistics."""
from __future__ import annotations

import shutil

import pytest

from prometheus_server import backfill_openmetrics, prometheus_on_blocks

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("prometheus") is None,
                                reason="prometheus/promtool not installed (make setup-dev)")
START = 1_700_002_800  # a whole 2 h block (promtool aligns blocks to 2 h)


def test_backfilled_samples_are_served_at_their_own_timestamps(tmp_path):
    lines = [f'incv4_steps_total{{namespace="ml",job_name="run1",rank="{rank}"}} {i * 10 * (rank + 1)} '
             f'{START + 15 * i}' for rank in range(2) for i in range(240)]
    source = tmp_path / "samples.om"
    source.write_text("\n".join(lines) + "\n# EOF\n")
    (tmp_path / "tsdb").mkdir()
    table = backfill_openmetrics(source, tmp_path / "tsdb")
    assert "NUM SAMPLES" in table and " 480 " in table
    with prometheus_on_blocks(tmp_path, compact=False) as prom:
        at = START + 15 * 239
        values = {r["metric"]["rank"]: float(r["value"][1]) for r in prom.query("incv4_steps_total", at=at)}
        assert values == {"0": 2390.0, "1": 4780.0}
        # 10 and 20 steps per 15 s: 2 steps/s in all
        assert float(prom.query("sum(rate(incv4_steps_total[1m]))", at=at)[0]["value"][1]) == pytest.approx(2.0)
        assert prom.query("incv4_steps_total", at=START - 600) == []  # nothing before the first sample
        data, wall = prom.query_with_stats("incv4_steps_total", start=at - 600, end=at, step="60s")
        assert len(data["result"]) == 2 and data["stats"]["samples"]["totalQueryableSamples"] > 0 and wall > 0
