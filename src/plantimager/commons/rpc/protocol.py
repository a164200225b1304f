"""Names and message shapes of the RPC wire protocol (see ``docs/protocol.md``)."""

from __future__ import annotations

import enum
import os
import traceback as _traceback
from typing import Any

__all__ = [
    "PROTOCOL_VERSION",
    "SIGNAL_CHECK",
    "NoResult",
    "RPCEvents",
    "error_reply",
    "format_remote_traceback",
]

#: Our extension key ``protocol`` in the inventory; upstream peers ignore it.
PROTOCOL_VERSION = 1


class RPCEvents(enum.StrEnum):
    """Values of the ``event`` field of RPC messages."""

    GET_INVENTORY = "GET_INVENTORY"
    INIT_SIGNALS_HANDLING = "INIT_SIGNALS_HANDLING"
    METHOD_CALL = "METHOD_CALL"
    PROPERTY_GET = "PROPERTY_GET"
    PROPERTY_SET = "PROPERTY_SET"
    STOP_SERVER = "STOP_SERVER"
    EMIT_SIGNAL = "EMIT_SIGNAL"
    #: Used by an older upstream signal protocol; answered with an error reply.
    FIND_PEER_ADDRESS = "FIND_PEER_ADDRESS"


#: Extension event: the server publishes ``{"event": "SIGNAL_CHECK", "token": ...}`` on its signal
#: channel so a client knows its subscription is live. Not a member of :class:`RPCEvents`, whose
#: values are upstream's.
SIGNAL_CHECK = "SIGNAL_CHECK"


class NoResult:
    """The outcome of a remote operation that failed: falsy, with the remote error details.

    Parameters
    ----------
    error : str
        The error message.
    traceback : str
        The remote traceback, possibly empty.
    error_type : str, optional
        Name of the remote exception class, when the server tells it (our extension).
    """

    __slots__ = ("error", "error_type", "traceback")

    def __init__(self, error: str, traceback: str = "", error_type: str | None = None) -> None:
        self.error = error
        self.traceback = traceback
        self.error_type = error_type

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"NoResult(error={self.error!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoResult) and (self.error, self.traceback) == (other.error, other.traceback)

    __hash__ = None  # type: ignore[assignment]


def format_remote_traceback(exc: BaseException, limit: int = 10) -> str:
    """Format ``exc`` for a reply: its last ``limit`` frames, with file names but not full paths."""
    frames = _traceback.extract_tb(exc.__traceback__)[-limit:]
    for frame in frames:
        frame.filename = os.path.basename(frame.filename)
    lines = ["Traceback (most recent call last):\n", *_traceback.format_list(frames)]
    lines.extend(_traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def error_reply(error: str, traceback: str = "") -> dict[str, Any]:
    """The uniform failure reply: ``{"success": false, "error": ..., "traceback": ...}``."""
    return {"success": False, "error": error, "traceback": traceback}
