"""SIGTERM as a stop request: the handler only records it (one line), the train step gets it as a flag, and the
run stops when the all-reduced flag says so, or at once when it is alone."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from incv4.trainer.training.stop import StopRequest


class Flag:
    def __init__(self, value):
        self.value = value

    def asnumpy(self):
        return np.float32(self.value)


@pytest.fixture
def restore_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_is_recorded_once_and_becomes_the_steps_stop_flag(restore_sigterm, capsys):
    pytest.importorskip("mindspore")
    stop = StopRequest()
    stop.install()
    assert float(stop.flag().asnumpy()) == 0.0
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    assert float(stop.flag().asnumpy()) == 1.0
    assert capsys.readouterr().out.splitlines() == [
        "SIGTERM received: finishing the current step, then saving a checkpoint"]


def test_ranks_stop_together_on_the_all_reduced_flag_and_a_lone_process_at_once():
    stop = StopRequest()
    assert not stop.agreed(Flag(0.0), rank_size=1)
    assert stop.agreed(Flag(1.0), rank_size=4)  # another rank got SIGTERM
    stop.requested = True
    assert stop.agreed(Flag(0.0), rank_size=1)
    assert not stop.agreed(Flag(0.0), rank_size=4)  # the next step carries this rank's flag to the others
