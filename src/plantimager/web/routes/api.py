"""The JSON API under ``/api/``: the live rig, capture, download, settings, shutdown, events.

Bad input is answered with a 4xx status and ``{"error": "..."}`` naming what was wrong (an unknown
camera 404, a setting out of range 422 with ``field`` and ``allowed``, malformed JSON 400, a body
that is not JSON 415); a conflict with what the rig is doing is 409; cameras that did not answer
are listed in ``failures`` (502 when none did). Every blocking call to the rig runs in the thread
pool. See ``docs/web.md`` for each endpoint.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..context import context_of
from ..errors import ApiError, check_fields, read_json_object
from ..events import to_json
from ..mjpegstream import pack_frame
from ..settings import parse_settings

__all__ = ["routes"]

_NO_CACHE = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}


class _JSON(JSONResponse):
    """JSON without NaN (which browsers cannot parse)."""

    def render(self, content: Any) -> bytes:
        """The body: compact JSON, non-finite numbers as null."""
        return to_json(content).encode("utf-8")


# -- the live rig ------------------------------------------------------------------------------------
async def cameras(request: Request) -> Response:
    """``GET /api/cameras``: the live rig (count, health, cameras, nodes, registry, dataset)."""
    return _JSON(await run_in_threadpool(context_of(request).controller.snapshot))


async def camera(request: Request) -> Response:
    """``GET /api/cameras/{camera}``: one camera, as in ``/api/cameras``."""
    web = context_of(request)
    key = request.path_params["camera"]
    await run_in_threadpool(web.controller.camera, key)  # 404 naming it
    snapshot = await run_in_threadpool(web.controller.snapshot)
    return _JSON(next(c for c in snapshot["cameras"] if c["key"] == key))


async def status(request: Request) -> Response:
    """``GET /api/status``: every node's own status (spool, clock offset...) and the dataset's counts."""
    return _JSON(await run_in_threadpool(context_of(request).controller.rig.status))


async def events(request: Request) -> Response:
    """``GET /api/events``: server-sent events (``text/event-stream``), see :mod:`..events`."""
    return StreamingResponse(
        context_of(request).events.stream(), media_type="text/event-stream", headers=_NO_CACHE
    )


# -- capture and download ----------------------------------------------------------------------------
async def _capture(request: Request, cameras: list[str] | None) -> Response:
    web = context_of(request)
    if web.scan is not None and web.scan.running:
        # A capture between its positions would join the scan's dataset at no known angle.
        raise ApiError(409, "a scan is running: it captures at each position (stop it, or wait for its end)")
    result = await run_in_threadpool(web.controller.capture, cameras)
    web.events.publish("capture", result)
    return _JSON(result)


async def capture_all(request: Request) -> Response:
    """``POST /api/capture``: fire every camera (or ``{"cameras": [...]}``) at one instant."""
    body = await read_json_object(request, optional=True)
    check_fields(body, ("cameras",))
    chosen = body.get("cameras")
    if chosen is not None:
        if (
            not isinstance(chosen, list)
            or not chosen
            or not all(isinstance(c, str) and c for c in chosen)
            or len(chosen) > 1024
        ):
            raise ApiError(
                422,
                "cameras must be a non-empty list of camera or node names (omit it for all)",
                field="cameras",
            )
        for name in chosen:
            await run_in_threadpool(context_of(request).controller.target, name)  # 404 naming it
    return await _capture(request, chosen)


async def capture_one(request: Request) -> Response:
    """``POST /api/cameras/{camera}/capture``: fire one camera (its node fires all its cameras)."""
    key = request.path_params["camera"]
    await run_in_threadpool(context_of(request).controller.target, key)
    await read_json_object(request, optional=True)
    return await _capture(request, [key])


async def download_start(request: Request) -> Response:
    """``POST /api/download``: start downloading what the cameras owe (202; progress as events)."""
    web = context_of(request)
    check_fields(await read_json_object(request, optional=True), ())
    job = web.download
    if job.running:
        raise ApiError(409, f"a download is already running ({job.done} of {job.total} images)")
    if web.scan is not None and web.scan.running:
        raise ApiError(409, "a scan is running: it downloads as it goes")
    if await run_in_threadpool(web.controller.folder) is None:
        raise ApiError(409, "nothing was captured yet: press Capture All first")
    return _JSON(job.start(), status_code=202)


async def download_state(request: Request) -> Response:
    """``GET /api/download``: the state of the current or last download."""
    return _JSON(context_of(request).download.as_dict())


async def gallery(request: Request) -> Response:
    """``GET /api/gallery``: the last capture of the dataset and its images downloaded so far."""
    return _JSON(await run_in_threadpool(context_of(request).controller.gallery))


async def new_session(request: Request) -> Response:
    """``POST /api/session``: start a new dataset folder under the captures folder."""
    web = context_of(request)
    check_fields(await read_json_object(request, optional=True), ())
    if web.download.running:
        raise ApiError(409, "wait for the download to finish before starting a new session")
    if web.scan is not None and web.scan.running:
        raise ApiError(409, "a scan is running into this session's dataset: stop it, or wait for its end")
    result = await run_in_threadpool(web.controller.new_session)
    web.events.state.pop("capture", None)
    web.events.poke()
    return _JSON(result)


# -- settings and shutdown ---------------------------------------------------------------------------
async def _configure(
    request: Request, name: str | None, body: dict[str, Any], extra: tuple[str, ...]
) -> Response:
    web = context_of(request)
    if name is not None:
        targets = await run_in_threadpool(web.controller.target, name)
    else:
        targets = await run_in_threadpool(web.controller.rig.cameras)
        if not targets:
            raise ApiError(409, "the rig has no camera to configure")
    known = {control for cam in targets for control in cam.controls}
    settings = parse_settings(body, known_controls=known, extra=extra)
    result = await run_in_threadpool(web.controller.configure, name, settings)
    web.events.poke()
    return _JSON(result)


async def settings_all(request: Request) -> Response:
    """``POST /api/settings``: apply settings to every camera, or to ``camera`` (a camera or node)."""
    body = await read_json_object(request)
    name = body.get("camera")
    if name is not None and (not isinstance(name, str) or not name):
        raise ApiError(
            422,
            "camera must be a camera name (node/cam0) or a node name; omit it for all cameras",
            field="camera",
        )
    return await _configure(request, name, body, ("camera",))


async def settings_one(request: Request) -> Response:
    """``POST /api/cameras/{camera}/settings``: apply settings to one camera (or one node's cameras)."""
    key = request.path_params["camera"]
    await run_in_threadpool(context_of(request).controller.target, key)
    return await _configure(request, key, await read_json_object(request), ())


async def shutdown(request: Request) -> Response:
    """``POST /api/shutdown`` with ``{"confirm": true}``: ask every camera node to stop."""
    web = context_of(request)
    body = await read_json_object(request)
    check_fields(body, ("confirm",))
    if body.get("confirm") is not True:
        raise ApiError(
            422,
            'Shutdown All stops every camera node: send {"confirm": true} to do it',
            field="confirm",
            allowed=[True],
        )
    result = await run_in_threadpool(web.controller.shutdown)
    web.events.publish("shutdown", result)
    web.events.poke()
    return _JSON(result)


# -- previews ------------------------------------------------------------------------------------------
async def previews_stats(request: Request) -> Response:
    """``GET /api/previews``: per camera, relay state, viewers, frames from the node and to viewers."""
    web = context_of(request)
    stats = web.previews.stats()
    return _JSON(
        {
            "cameras": stats,
            "viewers": sum(s["viewers"] for s in stats.values()),
            "frames_in": sum(s["frames_in"] for s in stats.values()),
            "frames_out": sum(s["frames_out"] for s in stats.values()),
        }
    )


async def previews_stream(request: Request) -> Response:
    """``GET /api/previews.bin[?cameras=a,b]``: every camera's preview frames on one connection."""
    web = context_of(request)
    raw = request.query_params.get("cameras")
    keys = None
    if raw:
        keys = [k for k in raw.split(",") if k]
        for key in keys:
            await run_in_threadpool(web.controller.camera, key)
    subscription = web.previews.subscribe(keys)

    async def frames() -> Any:
        try:
            while True:
                batch = await subscription.next()
                if not batch:
                    return
                yield b"".join(pack_frame(key, frame) for key, _seq, frame in batch)
        finally:
            subscription.close()

    return StreamingResponse(frames(), media_type="application/octet-stream", headers=_NO_CACHE)


routes = [
    Route("/api/cameras", cameras, methods=["GET"]),
    Route("/api/cameras/{camera:path}/capture", capture_one, methods=["POST"]),
    Route("/api/cameras/{camera:path}/settings", settings_one, methods=["POST"]),
    Route("/api/cameras/{camera:path}", camera, methods=["GET"]),
    Route("/api/status", status, methods=["GET"]),
    Route("/api/events", events, methods=["GET"]),
    Route("/api/capture", capture_all, methods=["POST"]),
    Route("/api/download", download_start, methods=["POST"]),
    Route("/api/download", download_state, methods=["GET"]),
    Route("/api/gallery", gallery, methods=["GET"]),
    Route("/api/session", new_session, methods=["POST"]),
    Route("/api/settings", settings_all, methods=["POST"]),
    Route("/api/shutdown", shutdown, methods=["POST"]),
    Route("/api/previews", previews_stats, methods=["GET"]),
    Route("/api/previews.bin", previews_stream, methods=["GET"]),
]
