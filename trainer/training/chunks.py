"""Steps in chunks: the host reads what it needs of the steps (the loss, the non-finite steps, the all-reduced
stop flag) once per chunk instead of after every step, so on an NPU the host never waits for the device between
the steps of a chunk (issue 20, item 3).

The host launches a chunk's steps (the compiled ChunkedStep, chunked_step.py) without waiting for any of them, keeps
their outputs as device tensors and reads them at the chunk's end, the one wait for the device; `tally_of` turns
what it read into the chunk's Tally. The same cell runs under both feeds (feeds.py): batch by batch from the host, or from
MindSpore's device queue (dataset sink mode).

Every rank computes the same chunk lengths from the plan (next_chunk_steps), so every rank reads the all-reduced
stop flag after the same step and all of them stop together at a chunk's end."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

# The longest chunk. A SIGTERM is honoured at the end of the chunk after the one it landed in (the step that
# carries the flag belongs to the next chunk at worst): at most 2 x 50 steps, 8.1 s at the seed's 80.97 ms/step,
# well inside the 30 s between SIGTERM and SIGKILL.
MAX_CHUNK_STEPS = 50


def next_chunk_steps(step_in_epoch: int, steps_per_epoch: int, log_interval: Optional[int], first: bool) -> int:
    """The steps of the next chunk: it ends at the next progress line (a multiple of log_interval within the
    epoch), at the epoch's end, or after MAX_CHUNK_STEPS, whichever comes first. The first chunk of a (re)start is
    one step, the one that compiles the graph, so its time is the compile's."""
    left = steps_per_epoch - step_in_epoch
    if first:
        return min(1, left)
    steps = min(left, MAX_CHUNK_STEPS)
    if log_interval:  # 0 or null: no progress lines
        steps = min(steps, log_interval - step_in_epoch % log_interval)
    return steps


@dataclass(frozen=True)
class Tally:
    """What the host learns of a chunk, read once at its end."""
    steps: int
    loss: float  # the last step's
    nonfinite_steps: int
    nonfinite_in_row: int  # at the chunk's end
    worst_in_row: int  # the longest run of non-finite steps in a row reached within the chunk
    stop_any: bool  # some rank had a stop request at the chunk's last step
    data_wait: float = 0.0  # seconds the host waited for batches (0 from the device queue)


def tally_of(finite: Sequence[bool], loss: float, stop_any: bool, in_row: int, data_wait: float = 0.0) -> Tally:
    """The Tally of a chunk whose steps were finite or not in order, `in_row` non-finite steps in a row before it."""
    nonfinite, worst = 0, in_row
    for step_finite in finite:
        in_row = 0 if step_finite else in_row + 1
        nonfinite += not step_finite
        worst = max(worst, in_row)
    return Tally(len(finite), loss, nonfinite, in_row, worst, stop_any, data_wait)
