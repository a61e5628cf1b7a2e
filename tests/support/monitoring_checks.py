"""Helper (no tests here): runs every query of the Grafana dashboard against a real Prometheus. Used by
tests/unit/monitoring/test_dashboard.py (light workers) and tests/e2e/test_metrics_e2e.py (a real training run)."""
from __future__ import annotations

import time

from incv4.operator.monitoring import dashboard


def check_dashboard(prom, board, namespace, job, at=None, rate_interval="20s"):
    """Every dashboard query against `prom`: those over incv4 metrics must return data, the others must be
    accepted; every variable must list values. Returns the problems found (empty = all good)."""
    problems = []
    for expr in dashboard.expressions(board):
        concrete = dashboard.fill_variables(expr, namespace, job, rate_interval=rate_interval)
        try:
            result = prom.query(concrete, at=at)
        except Exception as err:  # noqa: BLE001 - collect every failing query, not only the first
            problems.append(f"rejected: {concrete}: {err}")
            continue
        if "incv4_" in expr and not result:
            problems.append(f"no data: {concrete}")
    end = at or time.time()
    for name, label, selector in dashboard.variable_queries(board):
        values = prom.label_values(label, dashboard.fill_variables(selector, namespace, job), end - 3600, end)
        if not values:
            problems.append(f"variable {name} lists nothing")
    return problems
