"""Generators of the chart's monitoring files (Grafana dashboard, alert rules, contract.json)."""
