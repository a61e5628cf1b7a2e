"""The report's charts, drawn with matplotlib's Agg backend (no display, no network) into PNG bytes. Each chart
says how many points each of its curves has, counted from what was drawn."""
from __future__ import annotations

import io
from typing import Dict, List, Tuple

from incv4.operator.report.data import ACCURACY_CURVES, STEP_CURVES, ReportError, RunReport
from incv4.trainer import contract

# Written into every PNG, so a later run knows the file is a report incv4 made (and may replace it).
SOFTWARE = "incv4 report"
Chart = Tuple[str, bytes, Dict[str, int]]  # title, PNG bytes, {curve: points}


def pyplot():
    """matplotlib's pyplot on the Agg backend; ReportError (usage) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("incv4 report needs matplotlib: pip install 'incv4[train]' (or pip install matplotlib)",
                          contract.USAGE) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _draw_step_curve(axes, report: RunReport, key: str, title: str, ylabel: str, xlabel: str) -> Dict[str, int]:
    points = report.points(key)
    line, = axes.plot([x for x, _ in points], [y for _, y in points], marker="." if len(points) < 60 else None)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    values = [y for _, y in points]
    if key == "loss" and values and min(values) > 0 and max(values) / min(values) > 20:  # a long run's fall
        axes.set_yscale("log")
    return {key: len(line.get_xdata())}


def _draw_accuracy(axes, report: RunReport) -> Dict[str, int]:
    drawn = {}
    for key, label in ACCURACY_CURVES:
        points = report.points(key)
        line, = axes.plot([x for x, _ in points], [y * 100 for _, y in points], marker="o", label=label)
        drawn[key] = len(line.get_xdata())
    axes.set_title("Validation accuracy")
    axes.set_xlabel("epoch")
    axes.set_ylabel("%")
    axes.set_ylim(0, 102)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return drawn


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": SOFTWARE})
    return buffer.getvalue()


def charts(report: RunReport) -> List[Chart]:
    """One PNG per chart: the accuracy (what a run is for), then the step curves."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    drawn = _draw_accuracy(axes, report)
    out = [("Validation accuracy", _png(figure), drawn)]
    plt.close(figure)
    for key, title, ylabel, xlabel in STEP_CURVES:
        figure, axes = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
        drawn = _draw_step_curve(axes, report, key, title, ylabel, xlabel)
        out.append((title, _png(figure), drawn))
        plt.close(figure)
    return out


def combined_png(report: RunReport) -> Tuple[bytes, Dict[str, int]]:
    """Every curve in one PNG (a 3 x 2 grid), and {curve: points}."""
    plt = pyplot()
    figure, grid = plt.subplots(3, 2, figsize=(12, 10), layout="constrained")
    cells = list(grid.flat)
    drawn: Dict[str, int] = {}
    for axes, (key, title, ylabel, xlabel) in zip(cells, STEP_CURVES):
        drawn.update(_draw_step_curve(axes, report, key, title, ylabel, xlabel))
    drawn.update(_draw_accuracy(cells[len(STEP_CURVES)], report))
    cells[-1].axis("off")
    cells[-1].table(cellText=[[name, value] for name, value in report.summary()], loc="center")
    figure.suptitle(report.title)
    png = _png(figure)
    plt.close(figure)
    return png, drawn
