"""One MJPEG source: the producer thread that grabs frames while somebody watches, and its latest frame."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

__all__ = ["IDLE_TICK", "MAX_BACKOFF", "FrameSource", "valid_name"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: How often waiting threads re-check for shutdown or a vanished viewer, seconds.
IDLE_TICK = 0.25
#: Longest pause between two attempts of a failing ``grab()``, seconds.
MAX_BACKOFF = 2.0


def valid_name(name: object) -> bool:
    """1 to 64 of ``A-Z a-z 0-9 _ . -``, other than ``.`` and ``..``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and name not in {".", ".."}


class FrameSource:
    """One frame source: its producer thread and the latest frame shared by all viewers."""

    def __init__(self, name: str, grab: Callable[[], bytes], fps: float) -> None:
        self.name = name
        self.grab = grab
        self.interval = 1.0 / fps
        self.cond = threading.Condition()
        self.frame: bytes | None = None  # latest frame while the producer runs, None while parked
        self.seq = 0  # number of the latest frame
        self.grabbed = 0
        self.viewers = 0  # open stream responses
        self.waiting = 0  # snapshot requests waiting for a frame
        self.lease_until = 0.0  # monotonic time until which somebody polls the latest frame
        self.idle = True
        self.closed = False
        self.thread: threading.Thread | None = None

    def wanted(self) -> bool:
        """Tell whether anybody is watching, waiting for a frame, or polling the latest one."""
        return self.viewers + self.waiting > 0 or time.monotonic() < self.lease_until

    def poll(self, lease: float) -> tuple[int, bytes | None]:
        """The latest frame and its number, keeping the producer running ``lease`` seconds more.

        The frame is None while the producer is parked: it starts at once, and a later poll gets one.
        """
        with self.cond:
            until = time.monotonic() + lease
            if until > self.lease_until:
                self.lease_until = until
                self.cond.notify_all()
            return self.seq, self.frame

    def start(self) -> None:
        """Start the producer thread (it grabs frames only while somebody watches)."""
        self.thread = threading.Thread(target=self._run, name=f"mjpeg-source-{self.name}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Tell the producer and every viewer of this source to stop."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _run(self) -> None:
        failures = 0
        due = 0.0
        try:
            while True:
                with self.cond:
                    if not self.wanted() and not self.closed:
                        self.idle, self.frame = True, None
                        self.cond.notify_all()
                        while not self.wanted() and not self.closed:
                            self.cond.wait(1.0)
                    if self.closed:
                        return
                    self.idle = False
                    delay = due - time.monotonic()
                    if delay > 0:
                        self.cond.wait(delay)  # woken early on close; loop to re-check demand
                        continue
                started = time.monotonic()
                try:
                    frame = self._grab_once()
                except Exception:
                    failures += 1
                    backoff = min(0.1 * 2 ** min(failures - 1, 5), MAX_BACKOFF)
                    level = logging.WARNING if failures == 1 else logging.DEBUG  # no flood while down
                    logger.log(level, "grab() of %r failed (%d in a row)", self.name, failures, exc_info=True)
                    due = time.monotonic() + backoff
                    continue
                if failures:
                    logger.info("grab() of source %r works again after %d failures", self.name, failures)
                    failures = 0
                with self.cond:
                    self.frame = frame
                    self.seq += 1
                    self.grabbed += 1
                    self.cond.notify_all()
                due = started + self.interval
        finally:
            with self.cond:
                self.idle, self.frame = True, None
                self.cond.notify_all()

    def _grab_once(self) -> bytes:
        data = self.grab()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"grab() must return JPEG bytes, got {type(data).__name__}")
        frame = bytes(data)
        if not frame:
            raise ValueError("grab() returned an empty frame")
        return frame
