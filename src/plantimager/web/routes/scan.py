"""The scan endpoints: ``POST /api/scan`` starts one (202; progress as ``scan`` events), ``GET`` its state.

The body of ``POST /api/scan`` is ``{"positions": N, "turntable": NAME}`` (``turntable``
optional: the only one of the registry). The plan and the turntable are checked before the
answer: bad positions or an unknown turntable get 422 naming what was wrong, and nothing is
captured; a scan or a download already running gets 409.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plantimager.commons.errors import ValidationError
from plantimager.rig.scan import check_scan

from ..context import context_of
from ..errors import ApiError, check_fields, read_json_object

__all__ = ["routes"]


async def scan_start(request: Request) -> Response:
    """``POST /api/scan``: check the plan, then start the scan in the background (202)."""
    web = context_of(request)
    body = await read_json_object(request)
    check_fields(body, ("positions", "turntable"))
    positions, turntable = body.get("positions"), body.get("turntable")
    if isinstance(positions, bool) or not isinstance(positions, int):
        raise ApiError(422, f"positions must be a whole number, got {positions!r}", field="positions")
    if turntable is not None and not isinstance(turntable, str):
        raise ApiError(422, f"turntable must be a name, got {turntable!r}", field="turntable")
    job = web.scan
    if job is None:
        raise ApiError(503, "this app has no scan job")
    if job.running:
        raise ApiError(409, f"a scan is already running ({job.taken} of {job.total} positions)")
    if web.download.running:
        raise ApiError(409, "wait for the download to finish before scanning")
    try:
        name = await run_in_threadpool(check_scan, web.controller.rig, positions, turntable)
    except ValidationError as exc:
        raise ApiError(422, str(exc), field="turntable" if "turntable" in str(exc) else "positions") from None
    return JSONResponse(job.start(positions, name), status_code=202)


async def scan_stop(request: Request) -> Response:
    """``POST /api/scan/stop``: stop the running scan after the position under way (409 if none)."""
    web = context_of(request)
    check_fields(await read_json_object(request, optional=True), ())
    if web.scan is None or not web.scan.running:
        raise ApiError(409, "no scan is running")
    return JSONResponse(web.scan.stop())


async def scan_state(request: Request) -> Response:
    """``GET /api/scan``: the state of the current or last scan."""
    return JSONResponse(context_of(request).scan_state())


routes = [
    Route("/api/scan", scan_start, methods=["POST"]),
    Route("/api/scan", scan_state, methods=["GET"]),
    Route("/api/scan/stop", scan_stop, methods=["POST"]),
]
