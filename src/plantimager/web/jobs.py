"""Long actions started from the page: a download runs in the background and reports its progress.

A capture answers within its request (it takes milliseconds to seconds); a download can take
minutes, so ``POST /api/download`` starts it and answers ``202`` at once, and the page follows it
through ``download`` events (see :mod:`plantimager.web.events`). One download runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from plantimager.rig import DownloadProgress

from .controller import WebController, describe
from .events import EventHub

__all__ = ["DownloadJob"]

logger = logging.getLogger(__name__)


class DownloadJob:
    """The download of the web app: at most one at a time, its progress published as events.

    Parameters
    ----------
    controller : WebController
        Runs the download (on a worker thread).
    events : EventHub
        Where ``download`` events go.
    """

    def __init__(self, controller: WebController, events: EventHub) -> None:
        self.controller = controller
        self.events = events
        self.state = "idle"
        self.done = self.total = self.bytes = 0
        self.failed = 0
        self.file = ""
        self.started = self.finished = 0.0
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.run = ""  # id of the current or last download
        self.seq = 0  # number of its latest state (a page ignores states older than one it has)
        self._task: asyncio.Task[None] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The job's state as sent in ``download`` events and by ``GET /api/download``."""
        now = self.finished or (time.monotonic() if self.state == "running" else self.started)
        return {
            "run": self.run,
            "seq": self.seq,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "bytes": self.bytes,
            "file": self.file,
            "seconds": round(now - self.started, 3) if self.started else 0.0,
            "result": self.result,
            "error": self.error,
        }

    @property
    def running(self) -> bool:
        """Whether a download is in progress."""
        return self.state == "running"

    def start(self) -> dict[str, Any]:
        """Start a download (on the event loop); returns its state.

        Raises
        ------
        RuntimeError
            If one is already running.
        """
        if self.running:
            raise RuntimeError("a download is already running")
        self.state, self.error, self.result = "running", "", None
        self.run, self.seq = secrets.token_hex(4), 0
        self.done = self.total = self.bytes = self.failed = 0
        self.file = ""
        self.started, self.finished = time.monotonic(), 0.0
        self._publish()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="web-download")
        return self.as_dict()

    async def _run(self) -> None:
        try:
            result = await run_in_threadpool(self.controller.download, self._progress)
        except Exception as exc:
            logger.warning("download failed: %s", describe(exc))
            self.state, self.error = "failed", describe(exc)
        else:
            self.state, self.result = "done", result
            self.done = max(self.done, result["written"])
            self.total = max(self.total, self.done)
        self.finished = time.monotonic()
        self._publish()

    def _progress(self, event: DownloadProgress) -> None:
        """Called on the rig's worker threads after each image."""
        loop = self._loop()
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._advance, event)

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        task = self._task
        return task.get_loop() if task is not None else None

    def _advance(self, event: DownloadProgress) -> None:
        if self.state != "running":
            return
        self.done, self.total = max(self.done, event.done), max(self.total, event.total)
        self.bytes += event.size
        self.file = event.file
        if not event.ok:
            self.failed += 1
        self._publish()

    def _publish(self) -> None:
        self.seq += 1
        self.events.publish("download", self.as_dict())

    async def wait(self, timeout: float) -> None:
        """Wait for a running download to end, at most ``timeout`` seconds (at shutdown)."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(task)
