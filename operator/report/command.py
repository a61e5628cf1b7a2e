"""`incv4 report DIR` (a local run's history.jsonl) and `incv4 report --job NAME` (a cluster job, from
Prometheus): one self-contained HTML page, or with `-o FILE.png` one PNG with every curve."""
from __future__ import annotations

import os
import sys
from typing import Optional

import click

from incv4.operator.report.data import ReportError, RunReport
from incv4.trainer import contract

DEFAULT_PROMETHEUS = "http://localhost:9090"  # e.g. kubectl port-forward svc/prometheus-operated 9090
REPORT_FILE = "report.html"


def default_output(directory: Optional[str], job: Optional[str]) -> str:
    """Next to the history for a local run, in the working folder for a job."""
    if job:
        return f"{job}-report.html"
    folder = directory if os.path.isdir(directory) else os.path.dirname(os.path.abspath(directory))
    return os.path.join(folder, REPORT_FILE)


def _format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".html", ".htm", ".png"):
        raise ReportError(f"-o {path}: give a .html or a .png file name", contract.USAGE)
    return "png" if extension == ".png" else "html"


def _load(directory: Optional[str], job: Optional[str], namespace: str, prometheus: str, since: str) -> RunReport:
    if job:
        from incv4.operator.report.prometheus_source import from_prometheus

        return from_prometheus(prometheus, namespace, job, since=since)
    from incv4.operator.report.history_source import from_history

    return from_history(directory)


def write_report(directory: Optional[str], output: Optional[str] = None, job: Optional[str] = None,
                 namespace: str = "default", prometheus: str = DEFAULT_PROMETHEUS, since: str = "30d") -> str:
    """Write the report; returns its path. Raises ReportError."""
    if bool(directory) == bool(job):
        raise ReportError("give a run's folder (DIR) or --job NAME, not both", contract.USAGE)
    from incv4.operator.report import output as files, plots

    plots.pyplot()  # refuse before any work when matplotlib is missing
    output = output or default_output(directory, job)
    kind = _format(output)
    files.check_target(output)
    report = _load(directory, job, namespace, prometheus, since)
    if kind == "png":
        files.write(output, plots.combined_png(report)[0])
    else:
        from incv4.operator.report.html_page import page

        files.write(output, page(report, plots.charts(report)).encode("utf-8"))
    return output


@click.command("report")
@click.argument("directory", required=False, metavar="[DIR]")
@click.option("-o", "--output", metavar="FILE", help="FILE.html (one page) or FILE.png (the curves) "
              "[DIR/report.html; NAME-report.html for --job].")
@click.option("--job", metavar="NAME", help="A cluster job's report, from Prometheus, instead of a local DIR.")
@click.option("-n", "--namespace", default="default", show_default=True, help="The job's namespace (--job).")
@click.option("--prometheus", metavar="URL", default=DEFAULT_PROMETHEUS, show_default=True,
              help="Prometheus HTTP API to read the job from (--job).")
@click.option("--since", default="30d", show_default=True, help="How far back to look for the job (--job).")
def report_command(directory, output, job, namespace, prometheus, since):
    """Curves, recipe and summary of a run (DIR: its ckpt_save_dir) or of a cluster job (--job) as one HTML page."""
    try:
        path = write_report(directory, output, job, namespace, prometheus, since)
    except ReportError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    click.echo(f"report: {path}")
