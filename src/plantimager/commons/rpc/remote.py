"""Remote failures as local values: :class:`NoResult` for ``execute``, exceptions for proxy calls."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..errors import RemoteError
from .protocol import NoResult

__all__ = ["error_base", "no_result", "remote_error"]


def no_result(reply: dict[str, Any]) -> NoResult:
    error_type = reply.get("error_type")
    return NoResult(
        str(reply.get("error", "the server reported a failure without details")),
        str(reply.get("traceback", "") or ""),
        error_type if isinstance(error_type, str) else None,
    )


_REMOTE_CLASSES: dict[str, type[RemoteError]] = {}


def remote_error(error: str, traceback: str = "", error_type: str | None = None) -> RemoteError:
    """Build the exception for a remote failure.

    When the server names an error type of :mod:`plantimager.commons.errors` (or a built-in one
    such as ``ValueError``), the exception is also an instance of that type, so callers can write
    ``except ImageUnavailable``.
    """
    base = error_base(error_type)
    if base is None:
        return RemoteError(error, traceback)
    cls = _REMOTE_CLASSES.get(error_type)  # type: ignore[arg-type]
    if cls is None:
        cls = type(f"Remote{error_type}", (RemoteError, base), {"__str__": RemoteError.__str__})
        _REMOTE_CLASSES[error_type] = cls  # type: ignore[index]
    exc = cls.__new__(cls)
    # Not RemoteError.__init__: its super() would reach the base's own __init__, which may want
    # more than the text (RigError its failures, SpoolFull its sizes).
    Exception.__init__(exc, error)
    exc.error, exc.traceback = error, traceback
    return exc


def error_base(error_type: str | None) -> type[Exception] | None:
    if not error_type:
        return None
    candidate = getattr(errors, error_type, None)
    if isinstance(candidate, type) and issubclass(candidate, errors.PlantImagerError):
        return None if issubclass(candidate, RemoteError) else candidate
    builtin = {
        "ValueError": ValueError,
        "TypeError": TypeError,
        "KeyError": KeyError,
        "AttributeError": AttributeError,
        "PermissionError": PermissionError,
        "FileNotFoundError": FileNotFoundError,
    }
    return builtin.get(error_type)
