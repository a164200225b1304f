"""What every route of the web app shares: the controller, the event hub, the previews, the jobs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .controller import WebController
from .events import EventHub
from .files import Thumbnails
from .jobs import DownloadJob
from .relay import PreviewHub
from .scanjob import ScanJob

__all__ = ["WebContext", "context_of"]


@dataclass
class WebContext:
    """The parts of one web app, created by :func:`plantimager.web.app.create_app`.

    Attributes
    ----------
    controller : WebController
        The rig, in plain values.
    events : EventHub
        Server-sent events.
    previews : PreviewHub
        Relayed camera previews.
    download : DownloadJob
        The background download.
    thumbnails : Thumbnails
        Thumbnails of dataset images.
    scan : ScanJob or None
        The background scan.
    stream_urls : dict
        Camera -> its node's preview URL, from the latest snapshot.
    loop : asyncio.AbstractEventLoop or None
        The event loop serving the app, once it started.
    """

    controller: WebController
    events: EventHub
    previews: PreviewHub
    download: DownloadJob
    thumbnails: Thumbnails
    stream_urls: dict[str, str] = field(default_factory=dict)
    scan: ScanJob | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def follow(self, snapshot: dict[str, Any]) -> None:
        """Keep the previews in step with a new snapshot of the rig (on the event loop)."""
        self.stream_urls = {cam["key"]: cam.get("stream_url", "") for cam in snapshot["cameras"]}
        self.previews.set_cameras(self.stream_urls)

    def scan_state(self) -> dict[str, Any]:
        """The current or last scan's state, as ``GET /api/scan`` and the dashboard give it."""
        return self.scan.as_dict() if self.scan is not None else {"state": "idle"}

    async def close(self) -> None:
        """End every event stream and preview relay (the app keeps answering other requests)."""
        await self.events.close()
        await self.previews.close()


def context_of(request: Request) -> WebContext:
    """The context of the app serving ``request``."""
    return request.app.state.web
