"""A lane of work on a shared thread pool: at most so many jobs at a time, the others wait in order.

A download runs several kinds of work at once (transfers, fsyncs, releases), each with its own
bound. Running them as lanes of the rig's one thread pool, whose threads are started once and
kept, spares every download the cost of starting its own threads, which on a busy host is
milliseconds each.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

__all__ = ["Lane"]

T = TypeVar("T")


class Lane:
    """Runs jobs on ``executor``, at most ``limit`` at the same time, in the order they came.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        The shared pool (it must be able to run ``limit`` jobs of this lane besides its others).
    limit : int
        Most jobs of this lane running at once (>= 1).
    """

    def __init__(self, executor: Executor, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a lane needs a limit >= 1, got {limit}")
        self.executor = executor
        self.limit = limit
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._running = 0

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``job(*args)`` when a place in the lane is free; its result comes in the future."""
        future: Future[T] = Future()
        with self._lock:
            self._queue.append((future, job, args))
            start = self._running < self.limit
            if start:
                self._running += 1
        if start:
            try:
                self.executor.submit(self._drain)
            except BaseException:
                with self._lock:
                    self._running -= 1
                raise
        return future

    def _drain(self) -> None:
        # One of the lane's places: run queued jobs until there are none left.
        while True:
            with self._lock:
                if not self._queue:
                    self._running -= 1
                    return
                future, job, args = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(*args))
            except BaseException as exc:
                future.set_exception(exc)
