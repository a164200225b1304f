"""JSON encoding and decoding of wire messages.

Messages are single ZeroMQ frames holding a UTF-8 JSON object. We encode compactly with msgspec
and decode anything valid JSON, plus the ``NaN``/``Infinity`` tokens that Python's ``json`` module
emits (upstream peers use it).
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import msgspec

from ..errors import ProtocolError

__all__ = ["decode", "decode_object", "encode", "non_finite"]


def _enc_hook(obj: Any) -> Any:
    # numpy scalars and arrays, sets, enums, pathlib paths: anything with an obvious JSON form.
    if isinstance(obj, enum.Enum):
        return obj.value
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "shape", None) == ():
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"cannot encode an object of type {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.json.Decoder()


def encode(obj: Any) -> bytes:
    """Encode ``obj`` as compact UTF-8 JSON.

    Raises
    ------
    TypeError
        If ``obj`` holds a value with no JSON form.
    """
    try:
        return _encoder.encode(obj)
    except msgspec.EncodeError as exc:  # pragma: no cover - msgspec raises TypeError for most cases
        raise TypeError(str(exc)) from exc


def non_finite(obj: Any, where: str = "") -> str | None:
    """Where in ``obj`` the first NaN or infinity is (``[1]``, ``['angle']``...), None if nowhere.

    JSON has no form for them: :func:`encode` writes them as ``null``, which a receiver reads as
    None. Callers that must not send that look here first (only when the encoded text holds a
    ``null``, which keeps the common case free).
    """
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where or "the value"
    if isinstance(obj, dict):
        items: Any = ((f"[{key!r}]", value) for key, value in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"[{index}]", value) for index, value in enumerate(obj))
    else:
        return None
    for step, value in items:
        found = non_finite(value, where + step)
        if found is not None:
            return found
    return None


def decode(data: bytes | memoryview) -> Any:
    """Decode one JSON document.

    Raises
    ------
    ProtocolError
        If ``data`` is not UTF-8 JSON.
    """
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        pass
    # Python's json emits NaN/Infinity tokens that strict JSON parsers refuse.
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"message is not valid UTF-8 JSON: {exc}") from None


def decode_object(data: bytes | memoryview) -> dict[str, Any]:
    """Decode one JSON document that must be an object.

    Raises
    ------
    ProtocolError
        If ``data`` is not JSON or not a JSON object.
    """
    obj = decode(data)
    if not isinstance(obj, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(obj).__name__}")
    return obj
