"""Captures go first: the gate that keeps image transfers and releases out of a capture's way.

A node answers one request at a time, so a transfer running when a capture command arrives would
make that node fire late. A capture waits for the transfers in progress; none starts during one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

__all__ = ["TransferGate"]

logger = logging.getLogger(__name__)

#: Longest wait of a transfer for a capture to finish, seconds.
GATE_WAIT_S = 300.0


class TransferGate:
    """Lets captures go first: a capture waits for the transfers in progress, none starts during one.

    A node answers one request at a time, so a transfer running when a capture command arrives
    would make that node fire late.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._transfers = 0
        self._captures = 0

    @contextlib.contextmanager
    def transfer(self) -> Iterator[None]:
        """Hold the gate for one transfer (waits while a capture runs)."""
        with self._cond:
            self._cond.wait_for(lambda: self._captures == 0, GATE_WAIT_S)
            self._transfers += 1
        try:
            yield
        finally:
            with self._cond:
                self._transfers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def capture(self, timeout: float) -> Iterator[None]:
        """Hold the gate for a capture: new transfers wait; those running finish first (bounded)."""
        with self._cond:
            self._captures += 1
            if not self._cond.wait_for(lambda: self._transfers == 0, timeout):
                logger.warning("a transfer is still running as a capture starts")
        try:
            yield
        finally:
            with self._cond:
                self._captures -= 1
                self._cond.notify_all()
