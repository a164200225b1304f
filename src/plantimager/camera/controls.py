"""Validation of Picamera2 controls against the ranges a camera reports.

Errors name the control and its valid range; enumerated controls also accept their names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from plantimager.commons.errors import ValidationError
from plantimager.commons.number import is_finite

__all__ = ["ENUM_CONTROLS", "check_control", "is_int", "plain"]


def _names(*names: str) -> dict[str, int]:
    return {name: number for number, name in enumerate(names)}


#: Enumerated controls whose values may also be given by name (case-insensitive).
ENUM_CONTROLS: dict[str, dict[str, int]] = {
    "AfMode": _names("manual", "auto", "continuous"),
    "AfRange": _names("normal", "macro", "full"),
    "AfSpeed": _names("normal", "fast"),
    "AeExposureMode": _names("normal", "short", "long", "custom"),
    "AeMeteringMode": _names("centreweighted", "spot", "matrix", "custom"),
    "AwbMode": _names(
        "auto", "incandescent", "tungsten", "fluorescent", "indoor", "daylight", "cloudy", "custom"
    ),
}
#: Controls whose value is a fixed number of numbers: name -> (count, what they are).
_ARRAY_CONTROLS = {
    "ColourGains": (2, "[red_gain, blue_gain]"),
    "FrameDurationLimits": (2, "[min_us, max_us]"),
}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(*bounds: Any) -> bool:
    known = [b for b in bounds if b is not None]
    return bool(known) and all(is_int(b) for b in known)


def _check_number(name: str, value: Any, low: Any, high: Any, whole: bool, where: str) -> float:
    if not is_finite(value):
        raise ValidationError(f"{where}, got {value!r}")
    number = float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValidationError(f"{where}, got {value!r}")
    if whole:
        if number != int(number):
            raise ValidationError(f"{where} (whole numbers), got {value!r}")
        return int(number)
    return number


def check_control(name: str, value: Any, limits: tuple[Any, Any, Any]) -> Any:
    """Check one control value against the ``(min, max, default)`` the camera reports."""
    low, high, default = limits
    if isinstance(low, bool) or isinstance(high, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValidationError(f"control {name!r} must be true or false, got {value!r}")
    if name in ENUM_CONTROLS and isinstance(value, str):
        names = ENUM_CONTROLS[name]
        key = value.strip().lower().replace(" ", "").replace("_", "")
        if key not in names:
            raise ValidationError(
                f"control {name!r} must be one of {', '.join(names)} (or a number in [{low}, {high}]), "
                f"got {value!r}"
            )
        value = names[key]
    if name == "ScalerCrop" or (isinstance(high, (tuple, list)) and len(high) == 4):
        return _check_rectangle(name, value, low, high)
    if name in _ARRAY_CONTROLS or isinstance(low, (tuple, list)):
        count, what = _ARRAY_CONTROLS.get(name, (len(low) if isinstance(low, (tuple, list)) else 0, "values"))
        lows = low if isinstance(low, (tuple, list)) else [low] * count
        highs = high if isinstance(high, (tuple, list)) else [high] * count
        whole = _whole(*lows, *highs) and name != "ColourGains"
        where = (
            f"control {name!r} must be {what}: {count} {'whole ' if whole else ''}numbers each in "
            f"[{_fmt(lows)}, {_fmt(highs)}]"
        )
        if not isinstance(value, (list, tuple)) or len(value) != count:
            raise ValidationError(f"{where}, got {value!r}")
        checked = tuple(
            _check_number(name, v, lo, hi, whole, where) for v, lo, hi in zip(value, lows, highs, strict=True)
        )
        if name == "FrameDurationLimits" and checked[0] > checked[1]:
            raise ValidationError(f"{where}, with min_us <= max_us, got {value!r}")
        return checked
    whole = _whole(low, high) and (default is None or _whole(default))
    where = f"control {name!r} must be a number in [{low}, {high}]"
    if isinstance(value, (list, tuple)) and value and isinstance(default, (list, tuple)):
        where = f"control {name!r} must be {len(default)} numbers each in [{low}, {high}]"
        if len(value) != len(default):
            raise ValidationError(f"{where}, got {value!r}")
        return tuple(_check_number(name, v, low, high, whole, where) for v in value)
    return _check_number(name, value, low, high, whole, where)


def _fmt(values: Sequence[Any]) -> str:
    distinct = set(values)
    return str(values[0]) if len(distinct) == 1 else "/".join(str(v) for v in values)


def _check_rectangle(name: str, value: Any, low: Any, high: Any) -> tuple[int, int, int, int]:
    """A crop rectangle ``(x, y, width, height)`` inside ``high`` and at least as big as ``low``."""
    area = tuple(int(v) for v in high) if isinstance(high, (tuple, list)) and len(high) == 4 else None
    smallest = tuple(int(v) for v in low[2:4]) if isinstance(low, (tuple, list)) and len(low) == 4 else (1, 1)
    inside = f"inside {area}" if area else "on the sensor"
    where = (
        f"control {name!r} must be [x, y, width, height]: whole numbers, a rectangle {inside}, "
        f"at least {smallest[0]}x{smallest[1]}"
    )
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(is_finite(v) and float(v) == int(v) for v in value)
    ):
        raise ValidationError(f"{where}, got {value!r}")
    x, y, width, height = (int(v) for v in value)
    ok = width >= smallest[0] and height >= smallest[1] and x >= 0 and y >= 0
    if area is not None:
        ax, ay, aw, ah = area
        ok = ok and x >= ax and y >= ay and x + width <= ax + aw and y + height <= ay + ah
    if not ok:
        raise ValidationError(f"{where}, got {value!r}")
    return x, y, width, height


def plain(value: Any) -> Any:
    """A control limit or value as plain Python (tuples of numbers, numbers, bools or None)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    with contextlib.suppress(TypeError, ValueError):  # libcamera Rectangle/Size and the like
        return tuple(plain(v) for v in value)
    return value


# -- the backend ---------------------------------------------------------------------------------
