"""Long actions started from the page: a download runs in the background and reports its progress.

A capture answers within its request (it takes milliseconds to seconds); a download can take
minutes, so ``POST /api/download`` starts it and answers ``202`` at once, and the page follows it
through ``download`` events (see :mod:`plantimager.web.events`). One download runs at a time.
"""

from __future__ import annotations

from typing import Any

from plantimager.rig import DownloadProgress

from .controller import WebController
from .events import EventHub
from .job import BackgroundJob

__all__ = ["DownloadJob"]


class DownloadJob(BackgroundJob):
    """The download of the web app: at most one at a time, its progress published as events.

    Parameters
    ----------
    controller : WebController
        Runs the download (on a worker thread).
    events : EventHub
        Where ``download`` events go.
    """

    kind = "download"

    def __init__(self, controller: WebController, events: EventHub) -> None:
        super().__init__(controller, events)
        self.done = self.total = self.bytes = 0
        self.failed = 0
        self.file = ""

    def fields(self) -> dict[str, Any]:
        """Images done and in all, failed, bytes and the latest file."""
        return {
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "bytes": self.bytes,
            "file": self.file,
        }

    def start(self) -> dict[str, Any]:
        """Start a download (on the event loop); returns its state.

        Raises
        ------
        RuntimeError
            If one is already running.
        """
        if not self.running:
            self.done = self.total = self.bytes = self.failed = 0
            self.file = ""
        return self.launch(lambda: self.controller.download(self._progress))

    def done_with(self, result: dict[str, Any]) -> None:
        self.done = max(self.done, result["written"])
        self.total = max(self.total, self.done)

    def _progress(self, event: DownloadProgress) -> None:
        """Called on the rig's worker threads after each image."""
        self.from_thread(self._advance, event)

    def _advance(self, event: DownloadProgress) -> None:
        if self.state != "running":
            return
        self.done, self.total = max(self.done, event.done), max(self.total, event.total)
        self.bytes += event.size
        self.file = event.file
        if not event.ok:
            self.failed += 1
        self.publish()
