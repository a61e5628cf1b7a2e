"""How batches reach the chunked train step (chunks.py), one chunk of steps at a time.

- StepwiseFeed: the host's pipeline hands each batch to the compiled step; the host does not wait for the
  device between the steps of a chunk (graph-mode calls are asynchronous on an NPU) and reads their outputs once.
- SinkFeed (recipe dataset_sink_mode on Ascend or GPU): MindSpore's data sinking, `mindspore.data_sink`, as the
  published recipe asks. The run's batches go through MindSpore's device queue, so the step takes its batch on
  the device, and the host only launches steps and reads their outputs at a chunk's end. MindSpore refuses data
  sinking on the CPU (mindspore/train/data_sink.py: "Data sinking supports ascend or gpu device target"), so
  tests run this feed with a stand-in for `data_sink` that calls the step per batch.

Both feed the same batches in the same order: the sink feed's dataset is the run's epochs one after another,
each built as the stepwise feed builds it (Run.epoch_batches), so a resume sees the same data either way."""
from __future__ import annotations

import time
from typing import Callable, Iterator, Optional

from incv4.trainer.training.chunked_step import ChunkedStep, build_chunked_step, read_chunk
from incv4.trainer.training.chunks import Tally

SINK_DEVICES = ("Ascend", "GPU")


class StepwiseFeed:
    def __init__(self, chunked: ChunkedStep, stop, before_first_call: Callable, clock: Callable = time.monotonic):
        self.chunked = chunked
        self.stop = stop
        self.before_first_call = before_first_call
        self.clock = clock
        self.compiled = False
        self._batches: Optional[Iterator] = None

    def begin_epoch(self, epoch_batches: Callable, epoch: int, skip: int) -> None:
        self._batches = iter(epoch_batches(epoch, skip=skip))

    def run(self, steps: int, in_row: int) -> Tally:
        """Up to `steps` steps (fewer only if the epoch's batches run out), then one read of their outputs."""
        outputs, wait = [], 0.0
        for _ in range(steps):
            asked = self.clock()
            batch = next(self._batches, None)
            wait += self.clock() - asked
            if batch is None:
                break
            images, labels = batch
            if self.stop.requested:
                self.chunked.request_stop()
            if not self.compiled:  # the first call compiles the graph: once per node (compile_share.py)
                self.before_first_call(self.chunked, images, labels)
                self.compiled = True
            outputs.append(self.chunked(images, labels))
        return read_chunk(outputs, in_row, wait)


class RunBatches:
    """The rest of the run's batches, epoch after epoch from `position`, as numpy arrays: a sized source for
    MindSpore's GeneratorDataset (the device queue asks for its size first)."""

    def __init__(self, epoch_batches: Callable, position, epochs: int, steps_per_epoch: int):
        self.epoch_batches = epoch_batches
        self.start_epoch, self.skip = position.epoch, position.step_in_epoch
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch

    def __len__(self) -> int:
        return (self.epochs - self.start_epoch) * self.steps_per_epoch - self.skip

    def __iter__(self):
        for epoch in range(self.start_epoch, self.epochs):
            skip = self.skip if epoch == self.start_epoch else 0
            for images, labels in self.epoch_batches(epoch, skip=skip):
                yield _numpy(images), _numpy(labels)


def _numpy(value):
    return value.asnumpy() if hasattr(value, "asnumpy") else value


class SinkFeed:
    """One `mindspore.data_sink` for the whole run (a new one per epoch would compile the step again), one batch
    per call: each call is one step fed from the device queue. The chunk's steps are launched back to back and
    their outputs read once, as with the stepwise feed."""

    def __init__(self, chunked: ChunkedStep, stop, source: RunBatches, jit_level: str):
        import mindspore as ms
        import mindspore.dataset as ds

        self.chunked = chunked
        self.stop = stop
        dataset = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=False)
        self._sink = ms.data_sink(_step_of(chunked), dataset, sink_size=1,
                                  jit_config=ms.JitConfig(jit_level=jit_level))

    def begin_epoch(self, epoch_batches: Callable, epoch: int, skip: int) -> None:
        """Nothing to do: the device queue holds the run's epochs in order."""

    def run(self, steps: int, in_row: int) -> Tally:
        outputs = []
        for _ in range(steps):
            if self.stop.requested:
                self.chunked.request_stop()
            outputs.append(self._sink())
        return read_chunk(outputs, in_row)


def _step_of(chunked: ChunkedStep):
    def sink_step(images, labels):
        return chunked(images, labels)
    return sink_step


def uses_sink(recipe, device: str) -> bool:
    """dataset_sink_mode where MindSpore can sink (Ascend, GPU); the CPU steps per batch."""
    return bool(recipe.dataset_sink_mode) and device in SINK_DEVICES


def feed_for(run, stop):
    """The feed the run's recipe and device call for, over a chunked train step (chunked_step.py) built here."""
    chunked = build_chunked_step(run.train_step)
    if uses_sink(run.recipe, run.device):
        source = RunBatches(run.epoch_batches, run.position, run.recipe.epoch_size, run.steps_per_epoch)
        return SinkFeed(chunked, stop, source, run.recipe.jit_level)
    return StepwiseFeed(chunked, stop, run.sharing.before_first_call)
