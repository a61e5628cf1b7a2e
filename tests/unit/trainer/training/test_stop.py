"""SIGTERM as a stop request: the handler only records it (one line); the steps carry it as a flag
(chunked_step.py), and the run stops when the all-reduced flag says so, or at once when it is alone."""
from __future__ import annotations

import os
import signal

import pytest

from incv4.trainer.training.stop import StopRequest



@pytest.fixture
def restore_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_is_recorded_once(restore_sigterm, capsys):
    stop = StopRequest()
    stop.install()
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    assert capsys.readouterr().out.splitlines() == [
        "SIGTERM received: finishing the current steps, then saving a checkpoint"]


def test_ranks_stop_together_on_the_all_reduced_flag_and_a_lone_process_at_once():
    stop = StopRequest()
    assert not stop.agreed(False, rank_size=1)
    assert stop.agreed(True, rank_size=4)  # another rank got SIGTERM
    stop.requested = True
    assert stop.agreed(False, rank_size=1)
    assert not stop.agreed(False, rank_size=4)  # the next step carries this rank's flag to the others
