"""Camera settings sent by the page, checked before any camera sees them.

A settings body is a JSON object with any of ``resolution`` (``[width, height]`` or ``"WxH"``),
``encoding``, ``rotation``, ``quality`` and ``controls`` (control name -> value), and, on
``/api/settings``, an optional ``camera`` (one camera, or a node name for all its cameras). Each
check names the field, what is allowed and what was sent; the ranges of controls are the cameras'
own, so a value out of range is refused by the camera with its range (see ``api.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from plantimager.rig.settings import RESOLUTION_RANGE

from .errors import ApiError

__all__ = [
    "ENCODINGS",
    "RESOLUTION_RANGE",
    "ROTATIONS",
    "SETTING_FIELDS",
    "parse_settings",
]

ENCODINGS = ("jpeg", "png")
ROTATIONS = (0, 90, 180, 270)
#: Fields of a settings body.
SETTING_FIELDS = ("resolution", "encoding", "rotation", "quality", "controls")
_WXH = re.compile(r"^\s*(\d{1,6})\s*[xX\u00d7]\s*(\d{1,6})\s*$")
_MAX_CONTROLS = 64


def _refuse(name: str, allowed: str, value: Any) -> ApiError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ApiError(422, f"{name} must be {allowed}, got {shown}", field=name, allowed=allowed)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resolution(value: Any) -> list[int]:
    low, high = RESOLUTION_RANGE
    allowed = f'[width, height] or "WIDTHxHEIGHT", each a whole number from {low} to {high}'
    if isinstance(value, str):
        match = _WXH.match(value)
        if match is None:
            raise _refuse("resolution", allowed, value)
        values: list[Any] = [int(match.group(1)), int(match.group(2))]
    elif isinstance(value, list) and len(value) == 2:
        values = value
    else:
        raise _refuse("resolution", allowed, value)
    if not all(_is_int(v) and low <= v <= high for v in values):
        raise _refuse("resolution", allowed, value)
    return [int(v) for v in values]


def _control_value(name: str, value: Any) -> Any:
    allowed = "a number, true or false, a name (for an enumerated control) or a list of numbers"
    if isinstance(value, bool) or _is_int(value):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(f"controls.{name}", "a finite number", value)
        return value
    if isinstance(value, str) and 0 < len(value) <= 40:
        return value
    if (
        isinstance(value, list)
        and 0 < len(value) <= 8
        and all((_is_int(v) or isinstance(v, float)) and math.isfinite(v) for v in value)
    ):
        return value
    raise _refuse(f"controls.{name}", allowed, value)


def _controls(value: Any, known: Iterable[str] | None) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise _refuse("controls", 'an object of control names and values, e.g. {"Brightness": 0.2}', value)
    if len(value) > _MAX_CONTROLS:
        raise ApiError(422, f"controls: at most {_MAX_CONTROLS} controls at once", field="controls")
    names = sorted(known) if known is not None else None
    out = {}
    for name, item in value.items():
        if names is not None and name not in names:
            listing = ", ".join(names) if names else "none"
            raise ApiError(
                422,
                f"controls: unknown control {name[:60]!r}; the camera(s) have: {listing}",
                field=f"controls.{name[:60]}",
                allowed=names,
            )
        out[name] = _control_value(name, item)
    return out


def parse_settings(
    body: Mapping[str, Any], *, known_controls: Iterable[str] | None = None, extra: Iterable[str] = ()
) -> dict[str, Any]:
    """Check a settings body; return the keyword arguments of ``Rig.configure``.

    Parameters
    ----------
    body : mapping
        The decoded JSON object.
    known_controls : iterable of str, optional
        Controls the target cameras have (others are refused); None accepts any name.
    extra : iterable of str
        Other fields allowed in the body (not returned), such as ``camera``.

    Raises
    ------
    ApiError
        422 naming the first field that is not acceptable, what is allowed and what was sent;
        also when the body holds no setting or an unknown field.
    """
    allowed_fields = (*SETTING_FIELDS, *extra)
    unknown = [str(k) for k in body if k not in allowed_fields]
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ApiError(
            422,
            f"unknown field(s) {shown}; a settings object has {', '.join(allowed_fields)}",
            field=unknown[0][:40],
            allowed=list(allowed_fields),
        )
    out: dict[str, Any] = {}
    if body.get("resolution") is not None:
        out["resolution"] = _resolution(body["resolution"])
    if body.get("encoding") is not None:
        value = body["encoding"]
        if value not in ENCODINGS or not isinstance(value, str):
            raise _refuse("encoding", "one of " + ", ".join(map(repr, ENCODINGS)), value)
        out["encoding"] = value
    if body.get("rotation") is not None:
        value = body["rotation"]
        if not _is_int(value) or value not in ROTATIONS:
            raise _refuse("rotation", "one of 0, 90, 180, 270 (degrees clockwise)", value)
        out["rotation"] = value
    if body.get("quality") is not None:
        value = body["quality"]
        if not _is_int(value) or not 1 <= value <= 100:
            raise _refuse("quality", "a whole number from 1 to 100 (JPEG quality)", value)
        out["quality"] = value
    if body.get("controls") is not None:
        out["controls"] = _controls(body["controls"], known_controls)
    if not out:
        raise ApiError(
            422,
            "nothing to configure: give at least one of " + ", ".join(SETTING_FIELDS),
            allowed=list(SETTING_FIELDS),
        )
    return out
