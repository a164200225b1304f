"""The pages: the dashboard (``/``) and the full-screen preview of one camera (``/view/{camera}``).

Both are rendered on the server with the rig's state at that moment; the dashboard's script then
keeps it up to date from the event stream, so it never needs a reload.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..context import context_of
from ..controller import camera_path
from ..settings import ENCODINGS, RESOLUTION_RANGE, ROTATIONS

__all__ = ["routes"]

#: Resolutions offered in the settings panel (any other can be typed).
COMMON_RESOLUTIONS = ("640x480", "1280x960", "2028x1520", "4056x3040")


async def dashboard(request: Request) -> Response:
    """``GET /``: the dashboard."""
    web = context_of(request)
    snapshot = web.events.snapshot or await run_in_threadpool(web.controller.snapshot)
    gallery = await run_in_threadpool(web.controller.gallery)
    context = {
        "snapshot": snapshot,
        "gallery": gallery,
        "download": web.download.as_dict(),
        "scan": web.scan_state(),
        "capture": web.events.state.get("capture"),
        "encodings": ENCODINGS,
        "rotations": ROTATIONS,
        "resolutions": COMMON_RESOLUTIONS,
        "resolution_range": RESOLUTION_RANGE,
    }
    return request.app.state.templates.TemplateResponse(request, "index.html", context)


async def viewer(request: Request) -> Response:
    """``GET /view/{camera}``: one camera's preview filling the window."""
    web = context_of(request)
    key = request.path_params["camera"]
    cam = await run_in_threadpool(web.controller.camera, key)  # a 404 page naming it
    context = {"camera": cam, "preview": camera_path(cam.key, "preview.mjpg")}
    return request.app.state.templates.TemplateResponse(request, "viewer.html", context)


routes = [
    Route("/", dashboard, methods=["GET"]),
    Route("/view/{camera:path}", viewer, methods=["GET"]),
]
