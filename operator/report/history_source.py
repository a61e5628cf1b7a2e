"""A local run's report data from the history.jsonl its rank 0 wrote (trainer/training/history.py)."""
from __future__ import annotations

import os

from incv4.operator.report.data import ACCURACY_CURVES, STEP_CURVES, ReportError, RunReport
from incv4.trainer import contract
from incv4.trainer.training.history import EVAL, HISTORY_FILE, START, TRAIN, read_lines


def history_path(location: str) -> str:
    """The history file of a checkpoint folder (or the file itself). Raises ReportError (usage) when none."""
    path = location if os.path.isfile(location) else os.path.join(location, HISTORY_FILE)
    if not os.path.isdir(location) and not os.path.isfile(location):
        raise ReportError(f"{location}: no such folder (give a run's ckpt_save_dir)", contract.USAGE)
    if not os.path.isfile(path):
        raise ReportError(f"{location} holds no {HISTORY_FILE} (a run writes it in its ckpt_save_dir)",
                          contract.USAGE)
    return path


def from_history(location: str) -> RunReport:
    path = history_path(location)
    try:
        records = read_lines(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}", contract.FAILURE) from None
    trained = _last_per_step(r for r in records if r.get("kind") == TRAIN)
    evaluated = _last_per_step(r for r in records if r.get("kind") == EVAL)
    if not trained and not evaluated:
        raise ReportError(f"{path} holds no training lines yet", contract.FAILURE)
    starts = [r for r in records if r.get("kind") == START]
    start = starts[-1] if starts else {}
    report = RunReport(title=str(start.get("recipe_name") or "incv4 run"), source=os.path.abspath(path),
                       recipe=start.get("recipe"),
                       global_batch=start.get("global_batch"), planned_steps=start.get("total_steps"))
    for key, *_ in STEP_CURVES:
        report.curves[key] = [(r["step"], r[key]) for r in trained if _is_number(r.get(key))]
    for key, _ in ACCURACY_CURVES:
        report.curves[key] = [(r["epoch"], r[key]) for r in evaluated if _is_number(r.get(key))]
    report.last_step = max(r["step"] for r in trained + evaluated)
    times = [r["time"] for r in records if _is_number(r.get("time"))]
    report.seconds = max(times) - min(times) if times else None
    return report


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _last_per_step(records) -> list:
    """One record per step, the last one written, in step order."""
    by_step = {}
    for record in records:
        by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]
