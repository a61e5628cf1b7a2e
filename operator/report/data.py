"""What a report shows, whatever its source: the curves as (x, y) points and the run's facts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

Points = List[Tuple[float, float]]

# (key, title, y label, x label): the curves against the step, then the accuracy against the epoch
STEP_CURVES = (("loss", "Loss", "loss", "global step"), ("lr", "Learning rate", "lr", "global step"),
               ("img_per_s", "Throughput", "images / s (all workers)", "global step"),
               ("data_wait_s", "Data wait", "seconds per step waiting for input", "global step"))
ACCURACY_CURVES = (("top1", "top-1"), ("top5", "top-5"))


class ReportError(RuntimeError):
    """A report could not be made; the message is one line, `exit_code` the documented code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunReport:
    title: str
    source: str  # where the data came from, shown on the page
    curves: Dict[str, Points] = field(default_factory=dict)  # STEP_CURVES keys and ACCURACY_CURVES keys
    recipe: Optional[dict] = None  # the recipe, or what the source knows of it
    global_batch: Optional[int] = None
    last_step: Optional[int] = None
    planned_steps: Optional[int] = None
    seconds: Optional[float] = None  # wall time from the first record to the last

    def points(self, key: str) -> Points:
        return self.curves.get(key, [])

    def summary(self) -> List[Tuple[str, str]]:
        """(name, value) rows of the summary table."""
        top1 = [value for _, value in self.points("top1")]
        steps = "?" if self.last_step is None else str(self.last_step)
        if self.planned_steps:
            steps += f" of {self.planned_steps}"
        return [("best top-1", _percent(max(top1)) if top1 else "-"),
                ("last top-1", _percent(top1[-1]) if top1 else "-"),
                ("steps", steps),
                ("time", _duration(self.seconds)),
                ("global batch", "?" if self.global_batch is None else str(self.global_batch))]


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
