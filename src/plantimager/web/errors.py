"""Errors of the web app, and how each becomes a readable answer.

API requests (paths under ``/api/``) get JSON, ``{"error": "<what was wrong>", ...}``; pages get a
small HTML page with the same text and a link back. Nothing reaches the browser as a bare stack
trace: an unexpected failure is logged with its traceback and answered ``500`` with one line.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from plantimager.commons.errors import PlantImagerError, RigError, ValidationError

__all__ = [
    "MAX_BODY",
    "ApiError",
    "check_fields",
    "error_handlers",
    "read_json_object",
    "rig_error",
]

logger = logging.getLogger(__name__)

#: Largest JSON request body accepted, bytes.
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """A request the app refuses, with the HTTP status and a message naming what was wrong.

    Parameters
    ----------
    status : int
        HTTP status (4xx for bad input, 409 for a conflict with the rig's state, 502 when no
        camera answered).
    message : str
        What was wrong, in words a user can act on.
    **extra
        More JSON fields of the answer (``failures``, ``allowed``...).
    """

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse a request body with a field the endpoint does not take.

    Raises
    ------
    ApiError
        422 naming the unknown fields (at most five) and the ones the endpoint takes.
    """
    unknown = [str(k)[:40] for k in body if k not in allowed]
    if unknown:
        listing = ", ".join(allowed) if allowed else "no field"
        raise ApiError(
            422,
            f"unknown field(s) {', '.join(map(repr, unknown[:5]))}; this endpoint takes {listing}",
            field=unknown[0],
            allowed=list(allowed),
        )


async def read_json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object.

    Parameters
    ----------
    request : Request
        The request.
    optional : bool
        Accept an empty body (returns ``{}``).

    Raises
    ------
    ApiError
        403 if a browser sent it from another site, 415 if the body is not declared as JSON (an
        empty body may have no type), 413 if it is too large, 400 if it is not valid JSON or not
        an object.
    """
    _check_origin(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json":
        raise ApiError(415, f"send the body as application/json (got {ctype!r})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if optional:
            return {}
        raise ApiError(400, "the request needs a JSON object as its body, e.g. {}")
    if not ctype:
        raise ApiError(415, "send the body as application/json (it has no content type)")
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, got {_json_kind(value)}")
    return value


def _check_origin(request: Request) -> None:
    """Refuse a browser's request sent by a page of another site (cross-site request forgery).

    Browsers name the page's origin on every POST; other clients send none and are let through.
    JSON bodies already need a CORS preflight this app never grants; this also covers empty ones.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise ApiError(403, f"refused: a page of {origin[:100]} may not act on this rig")


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def rig_error(exc: PlantImagerError) -> ApiError:
    """Translate an error of the rig that is not a partial failure into an :class:`ApiError`."""
    if isinstance(exc, ValidationError):
        return ApiError(422, str(exc))
    if isinstance(exc, RigError):
        return ApiError(502, str(exc).splitlines()[0], failures=exc.failures)
    return ApiError(409, str(exc))


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")


def _error_page(request: Request, status: int, message: str) -> Response:
    templates = getattr(request.app.state, "templates", None)
    if templates is None:
        return HTMLResponse(f"<h1>{status}</h1><p>{message}</p>", status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def _answer(request: Request, status: int, message: str, **extra: Any) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, **extra}, status_code=status)
    return _error_page(request, status, message)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _answer(request, exc.status, exc.message, **exc.extra)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such page or endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}" if allowed else ""
        )
    else:
        message = str(exc.detail)
    response = _answer(request, exc.status_code, message)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def _on_plantimager_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PlantImagerError)
    error = rig_error(exc)
    return _answer(request, error.status, error.message, **error.extra)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return _answer(request, 500, message)


#: Exception handlers of the app.
error_handlers: dict[Any, Any] = {
    ApiError: _on_api_error,
    HTTPException: _on_http_exception,
    PlantImagerError: _on_plantimager_error,
    Exception: _on_unexpected,
}
