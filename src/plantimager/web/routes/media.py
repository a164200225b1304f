"""Media: the cameras' previews relayed from their nodes, and the dataset's images and thumbnails."""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from ..context import context_of
from ..errors import ApiError
from ..files import dataset_image
from ..mjpegstream import BOUNDARY, mjpeg_part

__all__ = ["routes"]

_NO_CACHE = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
#: Seconds a snapshot request waits for a frame.
SNAPSHOT_TIMEOUT = 5.0


async def preview(request: Request) -> Response:
    """``GET /cameras/{camera}/preview.mjpg``: the camera's preview, relayed as MJPEG.

    The relay stops when the viewer goes away (the node connection closes once nobody watches).
    """
    web = context_of(request)
    key = request.path_params["camera"]
    await run_in_threadpool(web.controller.camera, key)  # 404 naming it
    subscription = web.previews.subscribe([key])

    async def parts() -> Any:
        try:
            while True:
                batch = await subscription.next()
                if not batch:
                    yield f"--{BOUNDARY}--\r\n".encode("ascii")
                    return
                yield mjpeg_part(batch[-1][2])
        finally:
            subscription.close()

    return StreamingResponse(
        parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}", headers=_NO_CACHE
    )


async def snapshot(request: Request) -> Response:
    """``GET /cameras/{camera}/snapshot.jpg``: one fresh preview frame (503 if none comes in time)."""
    web = context_of(request)
    key = request.path_params["camera"]
    await run_in_threadpool(web.controller.camera, key)
    subscription = web.previews.subscribe([key])
    try:
        async with asyncio.timeout(SNAPSHOT_TIMEOUT):
            batch = await subscription.next()
    except TimeoutError:
        batch = []
    finally:
        subscription.close()
    if not batch:
        error = web.previews.stats().get(key, {}).get("error") or "no frame"
        raise ApiError(503, f"no preview frame from {key} within {SNAPSHOT_TIMEOUT:g} s: {error}")
    return Response(batch[-1][2], media_type="image/jpeg", headers=_NO_CACHE)


async def dataset_file(request: Request) -> Response:
    """``GET /dataset/files/{name}``: an image of the dataset, as stored."""
    web = context_of(request)
    path = await run_in_threadpool(dataset_image, web.controller, request.path_params["name"])
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


async def dataset_thumb(request: Request) -> Response:
    """``GET /dataset/thumbs/{name}``: a small JPEG of an image of the dataset."""
    web = context_of(request)
    path = await run_in_threadpool(dataset_image, web.controller, request.path_params["name"])
    data = await run_in_threadpool(web.thumbnails.get, path)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


routes = [
    Route("/cameras/{camera:path}/preview.mjpg", preview, methods=["GET"]),
    Route("/cameras/{camera:path}/snapshot.jpg", snapshot, methods=["GET"]),
    Route("/dataset/files/{name:path}", dataset_file, methods=["GET"]),
    Route("/dataset/thumbs/{name:path}", dataset_thumb, methods=["GET"]),
]
