from __future__ import annotations

import threading

import pytest
import zmq


@pytest.fixture
def ctx():
    """A fresh ZeroMQ context; the test fails if a socket is left open (term would hang)."""
    context = zmq.Context()
    yield context
    done = threading.Event()

    def term():
        context.term()
        done.set()

    thread = threading.Thread(target=term, daemon=True)
    thread.start()
    assert done.wait(10), "zmq context.term() hung: a socket was left open"
