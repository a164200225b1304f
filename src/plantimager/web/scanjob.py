"""The scan of the web app: runs in the background, its progress published as ``scan`` events.

``POST /api/scan`` checks the plan and the turntable, starts the scan and answers ``202`` at
once; the page follows it through ``scan`` events (positions taken, images downloaded, the angle
of the position under way). One scan runs at a time.
"""

from __future__ import annotations

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

    def fields(self) -> dict[str, Any]:
        """The phase, position under way and its angle, positions taken and in all, downloads."""
        return {
            "phase": self.phase,
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
        return self.launch(lambda: self.controller.scan(positions, turntable, self._progress))

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
