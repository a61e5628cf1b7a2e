"""Steps in chunks (chunks.py, chunked_step.py, feeds.py) with MindSpore's real compiled step on a tiny network
(graph mode, CPU): the chunk plan, a chunk's tally against the same steps read one by one, one host read per
chunk, the stop request, and the sink feed.

MindSpore refuses data sinking on the CPU (test_mindspore_refuses_data_sinking_on_the_cpu), so the sink feed runs
here with a stand-in for `mindspore.data_sink` that calls the step once per batch of the dataset, as MindSpore's
does with sink_size 1; what is tested is the sink feed's own work: the run-spanning dataset, the chunk's steps and
its one read."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from training_nan import LossWithGain  # noqa: E402

from incv4.trainer.checkpoint.store import Position  # noqa: E402
from incv4.trainer.training import feeds  # noqa: E402
from incv4.trainer.training.chunked_step import build_chunked_step  # noqa: E402
from incv4.trainer.training.chunks import MAX_CHUNK_STEPS, next_chunk_steps, tally_of  # noqa: E402
from incv4.trainer.training.step import build_train_step  # noqa: E402
from incv4.trainer.training.stop import StopRequest  # noqa: E402


@pytest.mark.parametrize("step_in_epoch, steps_per_epoch, log_interval, first, steps", [
    (0, 100, 10, True, 1),  # a (re)start's first chunk is the compile step
    (1, 100, 10, False, 9),  # to the next progress line
    (7, 100, 10, False, 3),  # a resume mid-interval still ends on the line
    (95, 100, 10, False, 5),  # the epoch's end
    (96, 100, 7, False, 2),  # line at 98 (a multiple of 7 within the epoch)
    (0, 5004, 100, False, MAX_CHUNK_STEPS),  # MindCV's log_interval 100: never longer than the SIGTERM budget
    (0, 5004, 0, False, MAX_CHUNK_STEPS),  # no progress lines
    (0, 5004, None, False, MAX_CHUNK_STEPS),  # log_interval: null, which the recipe accepts
    (5000, 5004, 0, False, 4),
])
def test_the_chunk_plan(step_in_epoch, steps_per_epoch, log_interval, first, steps):
    assert next_chunk_steps(step_in_epoch, steps_per_epoch, log_interval, first) == steps


@pytest.mark.parametrize("finite, in_row, nonfinite, in_row_after, worst", [
    ([True, True], 0, 0, 0, 0),
    ([True, False, False, True, False], 0, 3, 1, 2),
    ([False, False, True], 2, 2, 0, 4),  # the run carried in from the chunk before goes on
    ([True], 3, 0, 0, 3),  # the worst run counts the carried one, as the guard reads it
    ([], 1, 0, 1, 1),
])
def test_a_tally_counts_the_non_finite_steps_and_their_runs(finite, in_row, nonfinite, in_row_after, worst):
    tally = tally_of(finite, 0.5, True, in_row, 0.25)
    assert (tally.steps, tally.nonfinite_steps, tally.nonfinite_in_row, tally.worst_in_row) == (
        len(finite), nonfinite, in_row_after, worst)
    assert (tally.loss, tally.stop_any, tally.data_wait) == (0.5, True, 0.25)


class Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(6, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Dense(8, 3)

    def construct(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def _build(seed=3):
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(seed)
    net = Tiny()
    loss = LossWithGain(nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = build_train_step(net, loss, nn.Momentum(net.trainable_params(), 0.1, 0.9), 1.0, 1,
                            check_gradients=False)
    return step, net, loss


def _batches(count, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(4, 6)).astype(np.float32), rng.integers(0, 3, size=4).astype(np.int32))
            for _ in range(count)]


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _nan_at(loss, batches, nan_steps):
    """The batches as Tensors, the loss going NaN for the chosen ones (1-based), as the step takes each."""
    for i, (images, labels) in enumerate(batches, start=1):
        loss.set_nan(i in nan_steps)
        yield ms.Tensor(images), ms.Tensor(labels)


def test_a_chunks_tally_is_what_its_steps_read_one_by_one_say():
    batches, nan_steps = _batches(7), {2, 3, 6}
    # one by one: the plain train step, each output read
    step, net, loss = _build()
    losses, finite = [], []
    for images, labels in _nan_at(loss, batches, nan_steps):
        out = step(images, labels, ms.Tensor(True), ms.Tensor(np.float32(0.0)))
        losses.append(float(out[0].asnumpy()))
        finite.append(bool(out[1].asnumpy()))
    expected = _weights(net)
    # the same steps as chunks of 4 and 3
    step, net, loss = _build()
    feed = feeds.StepwiseFeed(build_chunked_step(step), StopRequest(), lambda *args: None)
    feed.begin_epoch(lambda epoch, skip: _nan_at(loss, batches, nan_steps), 0, 0)
    first, second = feed.run(4, in_row=0), feed.run(4, in_row=0)
    assert finite == [True, False, False, True, True, False, True]
    assert (first.steps, first.nonfinite_steps, first.worst_in_row, first.nonfinite_in_row) == (4, 2, 2, 0)
    assert (second.steps, second.nonfinite_steps, second.worst_in_row, second.nonfinite_in_row) == (3, 1, 1, 0)
    assert first.loss == pytest.approx(losses[3]) and second.loss == pytest.approx(losses[6])
    assert not first.stop_any and not second.stop_any
    assert all(np.array_equal(expected[k], v) for k, v in _weights(net).items())  # the same updates, NaNs skipped


def test_non_finite_steps_in_a_row_carry_over_into_the_next_chunk():
    step, _, loss = _build()
    batches = _batches(4)
    feed = feeds.StepwiseFeed(build_chunked_step(step), StopRequest(), lambda *args: None)
    feed.begin_epoch(lambda epoch, skip: _nan_at(loss, batches, {2, 3}), 0, 0)
    first = feed.run(2, in_row=0)
    second = feed.run(2, in_row=first.nonfinite_in_row)
    assert first.nonfinite_in_row == 1
    assert (second.nonfinite_steps, second.worst_in_row, second.nonfinite_in_row) == (1, 2, 0)


def test_the_host_reads_nothing_until_the_chunks_last_step_is_launched(monkeypatch):
    step, _, loss = _build()
    batches = [(ms.Tensor(x), ms.Tensor(y)) for x, y in _batches(6)]
    feed = feeds.StepwiseFeed(build_chunked_step(step), StopRequest(), lambda *args: None)
    feed.begin_epoch(lambda epoch, skip: iter(batches), 0, 0)
    feed.run(1, in_row=0)  # compiled before counting
    events, chunked, real = [], feed.chunked, ms.Tensor.asnumpy

    def launched(images, labels):
        events.append("step")
        return chunked(images, labels)

    def read(self):
        events.append("read")
        return real(self)

    monkeypatch.setattr(feed, "chunked", launched)  # no stop request here: the feed only calls it
    monkeypatch.setattr(ms.Tensor, "asnumpy", read)
    assert feed.run(5, in_row=0).steps == 5
    # one wait for the device (the first read, the last step's loss), then the finished steps' flags and the stop
    assert events == ["step"] * 5 + ["read"] * (1 + 5 + 1)


def test_a_stop_request_reaches_the_tally_from_the_next_step_on():
    step, _, _ = _build()
    stop = StopRequest()
    batches = [(ms.Tensor(x), ms.Tensor(y)) for x, y in _batches(4)]
    feed = feeds.StepwiseFeed(build_chunked_step(step), stop, lambda *args: None)
    feed.begin_epoch(lambda epoch, skip: iter(batches), 0, 0)
    assert not feed.run(2, in_row=0).stop_any
    stop.requested = True  # SIGTERM between two chunks
    assert feed.run(2, in_row=0).stop_any


def test_the_compile_is_shared_before_the_first_step_only():
    step, _, _ = _build()
    calls = []
    feed = feeds.StepwiseFeed(build_chunked_step(step), StopRequest(), lambda *args: calls.append(args))
    batches = [(ms.Tensor(x), ms.Tensor(y)) for x, y in _batches(3)]
    feed.begin_epoch(lambda epoch, skip: iter(batches), 0, 0)
    feed.run(1, in_row=0)
    feed.run(2, in_row=0)
    assert len(calls) == 1 and calls[0][0] is feed.chunked and calls[0][1] is batches[0][0]


def test_run_batches_are_the_rest_of_the_runs_epochs_in_order():
    asked = []

    def epoch_batches(epoch, skip=0):
        asked.append((epoch, skip))
        return [(np.full((1,), epoch * 10 + i), np.zeros(1)) for i in range(skip, 4)]

    source = feeds.RunBatches(epoch_batches, Position(epoch=1, global_step=6, step_in_epoch=2), 3, 4)
    assert len(source) == 6
    assert [int(images[0]) for images, _ in source] == [12, 13, 20, 21, 22, 23]
    assert asked == [(1, 2), (2, 0)]


def test_mindspore_refuses_data_sinking_on_the_cpu():
    # why the sink feed is tested with a stand-in; if this fails, MindSpore sinks on the CPU: test it for real
    import mindspore.dataset as ds

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    dataset = ds.NumpySlicesDataset({"x": np.ones((2, 1), np.float32)}, shuffle=False)
    with pytest.raises(ValueError, match="Data sinking supports ascend or gpu"):
        ms.data_sink(lambda x: x, dataset, sink_size=1)


@pytest.fixture
def data_sink_stand_in(monkeypatch):
    """mindspore.data_sink with sink_size 1, on the CPU: each call takes the dataset's next batch and runs the
    function on it."""
    made = []

    def data_sink(fn, dataset, sink_size=1, jit_config=None, input_signature=None):
        made.append(SimpleNamespace(size=dataset.get_dataset_size(), sink_size=sink_size,
                                    jit_level=jit_config.jit_config_dict["jit_level"]))
        batches = dataset.create_tuple_iterator(num_epochs=1)
        return lambda: fn(*next(batches))

    monkeypatch.setattr(ms, "data_sink", data_sink)
    return made


def test_the_sink_feed_trains_the_same_steps_as_the_stepwise_feed(data_sink_stand_in):
    epochs, steps_per_epoch = 2, 5
    data = {epoch: _batches(steps_per_epoch, seed=epoch) for epoch in range(epochs)}

    def epoch_batches(epoch, skip=0):
        return [(ms.Tensor(x), ms.Tensor(y)) for x, y in data[epoch][skip:]]

    def train(make_feed):
        step, net, _ = _build()
        feed, tallies, position = make_feed(step), [], Position(epoch=0, global_step=1, step_in_epoch=1)
        for epoch in range(epochs):
            feed.begin_epoch(epoch_batches, epoch, 1 if epoch == 0 else 0)
            left = steps_per_epoch - (1 if epoch == 0 else 0)
            while left:
                tally = feed.run(min(3, left), in_row=0)
                tallies.append((tally.steps, round(tally.loss, 5)))
                left -= tally.steps
        return tallies, _weights(net)

    start = Position(epoch=0, global_step=1, step_in_epoch=1)  # a resume: the first batch is skipped
    sink_tallies, sink_weights = train(lambda step: feeds.SinkFeed(
        build_chunked_step(step), StopRequest(), feeds.RunBatches(epoch_batches, start, epochs, steps_per_epoch),
        "O2"))
    step_tallies, step_weights = train(lambda step: feeds.StepwiseFeed(build_chunked_step(step), StopRequest(),
                                                                       lambda *args: None))
    assert [(m.size, m.sink_size, m.jit_level) for m in data_sink_stand_in] == [(9, 1, "O2")]  # one, for the run
    assert sink_tallies == step_tallies == [(3, sink_tallies[0][1]), (1, sink_tallies[1][1]),
                                            (3, sink_tallies[2][1]), (2, sink_tallies[3][1])]
    assert all(np.allclose(step_weights[k], v, atol=1e-6) for k, v in sink_weights.items())


def test_the_feed_follows_the_recipe_and_the_device():
    assert feeds.uses_sink(SimpleNamespace(dataset_sink_mode=True), "Ascend")
    assert not feeds.uses_sink(SimpleNamespace(dataset_sink_mode=False), "Ascend")
    assert not feeds.uses_sink(SimpleNamespace(dataset_sink_mode=True), "CPU")
