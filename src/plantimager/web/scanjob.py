"""The scan of the web app: runs in the background, its progress published as ``scan`` events.

``POST /api/scan`` checks the plan and the turntable, starts the scan and answers ``202`` at
once; the page follows it through ``scan`` events (positions taken, images downloaded, the angle
of the position under way). One scan runs at a time. ``POST /api/scan/stop`` stops it after the
position under way, as Ctrl-C does ``plantimager rig scan``; Scan again goes on from there.
"""

from __future__ import annotations

import threading
from typing import Any

from plantimager.rig.scan import ScanProgress

from .controller import WebController
from .events import EventHub
from .job import BackgroundJob

__all__ = ["ScanJob"]


class ScanJob(BackgroundJob):
    """At most one scan at a time, its progress published as events.

    Parameters
    ----------
    controller : WebController
        Runs the scan (on a worker thread).
    events : EventHub
        Where ``scan`` events go.
    """

    kind = "scan"

    def __init__(self, controller: WebController, events: EventHub) -> None:
        super().__init__(controller, events)
        self.phase = ""
        self.taken = self.total = self.downloaded = 0
        self.index = 0
        self.angle: float | None = None
        self.stopping = False
        self._stop = threading.Event()

    def fields(self) -> dict[str, Any]:
        """The phase, position under way and its angle, positions taken and in all, downloads,
        and whether it was asked to stop."""
        return {
            "phase": self.phase,
            "stopping": self.stopping,
            "index": self.index,
            "angle": self.angle,
            "taken": self.taken,
            "total": self.total,
            "downloaded": self.downloaded,
        }

    def start(self, positions: int, turntable: str | None) -> dict[str, Any]:
        """Start a scan (on the event loop); returns its state.

        Raises
        ------
        RuntimeError
            If one is already running.
        """
        if not self.running:
            self.phase = "starting"
            self.taken = self.downloaded = self.index = 0
            self.total, self.angle = positions, None
            self.stopping, self._stop = False, threading.Event()
        stop = self._stop
        return self.launch(lambda: self.controller.scan(positions, turntable, self._progress, stop))

    def stop(self) -> dict[str, Any]:
        """Stop the running scan after the position under way (on the event loop); returns its state.

        The positions left stay to be done: a scan of the same plan goes on with them.

        Raises
        ------
        RuntimeError
            If no scan is running.
        """
        if not self.running:
            raise RuntimeError("no scan is running")
        if not self.stopping:
            self.stopping = True
            self._stop.set()
            self.publish()
        return self.as_dict()

    def done_with(self, result: dict[str, Any]) -> None:
        self.taken = max(self.taken, result["taken"] + result["already"])

    def _progress(self, event: ScanProgress) -> None:
        """Called on the rig's threads at each step."""
        self.from_thread(self._advance, event)

    def _advance(self, event: ScanProgress) -> None:
        if self.state != "running":
            return
        if event.download is not None:
            self.downloaded += int(event.download.ok)
        else:
            self.phase, self.index, self.angle = event.phase, event.index, event.angle
            self.taken, self.total = event.taken, event.total
        self.publish()
