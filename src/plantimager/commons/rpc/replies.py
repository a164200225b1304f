"""The replies a server sends: buffer results, failures, and the text for an unknown event."""

from __future__ import annotations

from typing import Any

from ..errors import AccessDenied, ProtocolError
from .protocol import RPCEvents, error_reply, format_remote_traceback
from .wire import encode

__all__ = ["buffer_reply", "failure_reply", "unknown_event_text"]


def buffer_reply(name: str, result: Any) -> list[Any]:
    """Return the reply frames (info header, raw buffer) of buffer method ``name``, given its ``result``."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(
            f"buffer method {name}() must return (buffer, info dict), got {type(result).__name__}"
        )
    buffer, info = result
    if info is None:
        info = {}
    if not isinstance(info, dict):
        raise TypeError(f"buffer method {name}() must return a dict as info, got {type(info).__name__}")
    if "error" in info:
        raise ValueError(f"the info dict of buffer method {name}() must not contain the key 'error'")
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"buffer method {name}() must return a bytes-like buffer, got {type(buffer).__name__}"
        ) from None
    try:
        header = encode(info)
    except TypeError as exc:
        raise TypeError(f"info dict of {name}() cannot be sent as JSON: {exc}") from None
    return [header, view if view.contiguous else view.tobytes()]


def failure_reply(exc: Exception) -> dict[str, Any]:
    """Return the error reply telling a client that its request failed with ``exc``."""
    if isinstance(exc, (ProtocolError, AccessDenied)):  # our refusals: no traceback of ours
        reply = error_reply(str(exc), "")
    else:
        reply = error_reply(str(exc) or type(exc).__name__, format_remote_traceback(exc))
    reply["error_type"] = type(exc).__name__  # extension: lets our clients raise a precise error
    return reply


def unknown_event_text(event: Any) -> str:
    """Say that ``event`` is not a request this server answers, listing those it does."""
    known = ", ".join(
        e.value for e in RPCEvents if e not in (RPCEvents.EMIT_SIGNAL, RPCEvents.FIND_PEER_ADDRESS)
    )
    if event is None:
        return f"the request has no 'event' field; expected one of {known}"
    return f"unknown event {event!r}; expected one of {known}"
