"""The report as one self-contained HTML page: the summary table, the charts as base64 PNGs, the recipe. Nothing
is fetched at view time (no scripts, no links; the page's Content-Security-Policy allows only inline images)."""
from __future__ import annotations

import base64
import html
import json
from typing import List

import yaml

from incv4.operator.report.data import RunReport
from incv4.operator.report.plots import Chart

# The page's first line: a later run knows the file is a report incv4 made (and may replace it).
MARKER = "<!-- written by incv4 report -->"
_STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
          "#curves{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px}"
          "figure{margin:0}figure img{width:100%;height:auto}"
          "pre{background:#f5f5f5;padding:1em;overflow:auto}")


def _summary_table(report: RunReport) -> str:
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
                   for name, value in report.summary())
    return f"<table id=\"summary\">{rows}</table>"


def _figure(chart: Chart) -> str:
    title, png, points = chart
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure data-points='{html.escape(json.dumps(points), quote=True)}'>"
            f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\"></figure>")


def _recipe(report: RunReport) -> str:
    if not report.recipe:
        return "<p>The source holds no recipe.</p>"
    text = yaml.safe_dump(json.loads(json.dumps(report.recipe, default=str)), sort_keys=False)
    return f"<pre id=\"recipe\">{html.escape(text)}</pre>"


def page(report: RunReport, charts: List[Chart]) -> str:
    title = html.escape(f"incv4 report: {report.title}")
    return "\n".join([
        MARKER, "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{title}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1><p>from {html.escape(report.source)}</p>",
        "<h2>Summary</h2>", _summary_table(report),
        "<h2>Curves</h2>", f"<div id=\"curves\">{''.join(_figure(chart) for chart in charts)}</div>",
        "<h2>Recipe</h2>", _recipe(report),
        "</body></html>", ""])
