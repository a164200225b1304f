"""A long action started from the page, run in the background, its progress published as events.

:class:`BackgroundJob` holds what every such action shares: at most one runs at a time, it runs
on a worker thread, and each change of its state is published as an event of its ``kind`` with
a run id and a sequence number (a page ignores states older than one it has). Subclasses (the
download, the scan) add their own fields and the work itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from .controller import WebController, describe
from .events import EventHub

__all__ = ["BackgroundJob"]

logger = logging.getLogger(__name__)


class BackgroundJob:
    """At most one run at a time of a long action, its state published as ``kind`` events.

    Parameters
    ----------
    controller : WebController
        Runs the work (on a worker thread).
    events : EventHub
        Where the events go.
    """

    #: Name of the job's events, and of the job in messages.
    kind = "job"

    def __init__(self, controller: WebController, events: EventHub) -> None:
        self.controller = controller
        self.events = events
        self.state = "idle"
        self.started = self.finished = 0.0
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.run = ""  # id of the current or last run
        self.seq = 0  # number of its latest state
        self._task: asyncio.Task[None] | None = None

    def fields(self) -> dict[str, Any]:
        """The job's own fields of its state (subclasses add theirs)."""
        return {}

    def as_dict(self) -> dict[str, Any]:
        """The job's state, as sent in its events and by its ``GET`` endpoint."""
        now = self.finished or (time.monotonic() if self.state == "running" else self.started)
        return {
            "run": self.run,
            "seq": self.seq,
            "state": self.state,
            **self.fields(),
            "seconds": round(now - self.started, 3) if self.started else 0.0,
            "result": self.result,
            "error": self.error,
        }

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.state == "running"

    def launch(self, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Start ``work`` on a worker thread (call on the event loop); returns the state.

        Raises
        ------
        RuntimeError
            If a run is already in progress.
        """
        if self.running:
            raise RuntimeError(f"a {self.kind} is already running")
        self.state, self.error, self.result = "running", "", None
        self.run, self.seq = secrets.token_hex(4), 0
        self.started, self.finished = time.monotonic(), 0.0
        self.publish()
        self._task = asyncio.get_running_loop().create_task(self._run(work), name=f"web-{self.kind}")
        return self.as_dict()

    async def _run(self, work: Callable[[], dict[str, Any]]) -> None:
        try:
            result = await run_in_threadpool(work)
        except Exception as exc:
            logger.warning("%s failed: %s", self.kind, describe(exc))
            self.state, self.error = "failed", describe(exc)
        else:
            self.state, self.result = "done", result
            self.done_with(result)
        self.finished = time.monotonic()
        self.publish()

    def done_with(self, result: dict[str, Any]) -> None:
        """Update the job's fields from the result of a run that ended well (subclasses)."""

    def from_thread(self, advance: Callable[[Any], None], event: Any) -> None:
        """Call ``advance(event)`` on the event loop, from a worker thread (progress callbacks)."""
        task = self._task
        if task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the page is gone
                task.get_loop().call_soon_threadsafe(advance, event)

    def publish(self) -> None:
        """Publish the job's state as a new event."""
        self.seq += 1
        self.events.publish(self.kind, self.as_dict())

    async def wait(self, timeout: float) -> None:
        """Wait for a run in progress to end, at most ``timeout`` seconds (at shutdown)."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(task)
