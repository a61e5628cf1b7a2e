"""Helper (no tests here): runs every query of the Grafana dashboard against a real Prometheus. Used by
tests/unit/monitoring/test_dashboard.py (light workers) and tests/e2e/test_metrics_e2e.py (a real training run).
Also checks a dashboard against Grafana's schemas (tests/support/grafana_schema/)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema

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


GRAFANA_SCHEMAS = Path(__file__).resolve().parent / "grafana_schema"


def _schema(name, definition=None):
    schema = json.loads((GRAFANA_SCHEMAS / f"{name}.jsonschema.json").read_text())
    if definition:
        schema = dict(schema, **{"$ref": f"#/definitions/{definition}"})
    return jsonschema.Draft7Validator(schema)


def grafana_schema_errors(board):
    """Where `board` breaks Grafana's dashboard schema, its panels' plugin schemas or the Prometheus query schema
    (tests/support/grafana_schema/SOURCE.md). Empty = valid."""
    found = [f"dashboard {list(e.absolute_path)}: {e.message}" for e in _schema("dashboard").iter_errors(board)]
    query = _schema("prometheus")
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        where = f"panel {panel['title']!r}"
        found += [f"{where} options: {e.message}"
                  for e in _schema(panel["type"], "Options").iter_errors(panel.get("options", {}))]
        if panel["type"] != "stat":  # the stat plugin declares no custom field config
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
            found += [f"{where} custom: {e.message}"
                      for e in _schema(panel["type"], "FieldConfig").iter_errors(custom)]
        found += [f"{where} target: {e.message}" for t in panel["targets"] for e in query.iter_errors(t)]
    return found
