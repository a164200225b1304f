"""The scan of the web app: runs in the background, its progress published as ``scan`` events.

``POST /api/scan`` checks the plan and the turntable, starts the scan and answers ``202`` at
once; the page follows it through ``scan`` events (positions taken, images downloaded, the angle
of the position under way). One scan runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from plantimager.rig.scan import ScanProgress

from .controller import WebController, describe
from .events import EventHub

__all__ = ["ScanJob"]

logger = logging.getLogger(__name__)


class ScanJob:
    """At most one scan at a time, its progress published as events.

    Parameters
    ----------
    controller : WebController
        Runs the scan (on a worker thread).
    events : EventHub
        Where ``scan`` events go.
    """

    def __init__(self, controller: WebController, events: EventHub) -> None:
        self.controller = controller
        self.events = events
        self.state = "idle"
        self.phase = ""
        self.taken = self.total = self.downloaded = 0
        self.index = 0
        self.angle: float | None = None
        self.started = self.finished = 0.0
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.run = ""
        self.seq = 0
        self._task: asyncio.Task[None] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The job's state as sent in ``scan`` events and by ``GET /api/scan``."""
        now = self.finished or (time.monotonic() if self.state == "running" else self.started)
        return {
            "run": self.run,
            "seq": self.seq,
            "state": self.state,
            "phase": self.phase,
            "index": self.index,
            "angle": self.angle,
            "taken": self.taken,
            "total": self.total,
            "downloaded": self.downloaded,
            "seconds": round(now - self.started, 3) if self.started else 0.0,
            "result": self.result,
            "error": self.error,
        }

    @property
    def running(self) -> bool:
        """Whether a scan is in progress."""
        return self.state == "running"

    def start(self, positions: int, turntable: str | None) -> dict[str, Any]:
        """Start a scan (on the event loop); returns its state.

        Raises
        ------
        RuntimeError
            If one is already running.
        """
        if self.running:
            raise RuntimeError("a scan is already running")
        self.state, self.phase, self.error, self.result = "running", "starting", "", None
        self.run, self.seq = secrets.token_hex(4), 0
        self.taken = self.downloaded = self.index = 0
        self.total, self.angle = positions, None
        self.started, self.finished = time.monotonic(), 0.0
        self._publish()
        self._task = asyncio.get_running_loop().create_task(self._run(positions, turntable), name="web-scan")
        return self.as_dict()

    async def _run(self, positions: int, turntable: str | None) -> None:
        try:
            result = await run_in_threadpool(self.controller.scan, positions, turntable, self._progress)
        except Exception as exc:
            logger.warning("scan failed: %s", describe(exc))
            self.state, self.error = "failed", describe(exc)
        else:
            self.state, self.result = "done", result
            self.taken = max(self.taken, result["taken"] + result["already"])
        self.finished = time.monotonic()
        self._publish()

    def _progress(self, event: ScanProgress) -> None:
        """Called on the rig's threads at each step."""
        task = self._task
        if task is not None:
            with contextlib.suppress(RuntimeError):
                task.get_loop().call_soon_threadsafe(self._advance, event)

    def _advance(self, event: ScanProgress) -> None:
        if self.state != "running":
            return
        if event.download is not None:
            self.downloaded += int(event.download.ok)
        else:
            self.phase, self.index, self.angle = event.phase, event.index, event.angle
            self.taken, self.total = event.taken, event.total
        self._publish()

    def _publish(self) -> None:
        self.seq += 1
        self.events.publish("scan", self.as_dict())

    async def wait(self, timeout: float) -> None:
        """Wait for a running scan to end, at most ``timeout`` seconds (at shutdown)."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(task)
