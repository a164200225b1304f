"""Camera settings as the rig accepts them, checked before any node sees them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from plantimager.commons.errors import ValidationError

__all__ = ["RESOLUTION_RANGE", "ROTATIONS", "check_settings"]

#: Accepted rotations, degrees clockwise.
ROTATIONS = (0, 90, 180, 270)
#: Smallest and largest width or height accepted (a camera clamps to what it supports).
RESOLUTION_RANGE = (64, 65535)


def check_settings(
    resolution: Iterable[int] | None = None,
    encoding: str | None = None,
    rotation: int | None = None,
    quality: int | None = None,
    controls: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check camera settings before any node sees them; return the ``settings`` dict to send.

    Raises
    ------
    ValidationError
        Naming the setting that is not acceptable, or if no setting is given.
    """
    settings: dict[str, Any] = {}
    if resolution is not None:
        values = list(resolution)
        low, high = RESOLUTION_RANGE
        if len(values) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values
        ):
            raise ValidationError(
                f"resolution must be two whole numbers (width, height) from {low} to {high}, "
                f"got {resolution!r}"
            )
        settings["resolution"] = values
    if encoding is not None:
        if encoding not in ("jpeg", "png"):
            raise ValidationError(f"encoding must be 'jpeg' or 'png', got {encoding!r}")
        settings["encoding"] = encoding
    if rotation is not None:
        if isinstance(rotation, bool) or rotation not in ROTATIONS:
            raise ValidationError(f"rotation must be one of 0, 90, 180, 270 degrees, got {rotation!r}")
        settings["rotation"] = rotation
    if quality is not None:
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ValidationError(f"quality must be an integer from 1 to 100, got {quality!r}")
        settings["quality"] = quality
    if controls is not None:
        if not isinstance(controls, Mapping) or not all(isinstance(k, str) and k for k in controls):
            raise ValidationError("controls must map control names to values")
        settings["controls"] = dict(controls)
    if not settings:
        raise ValidationError(
            "nothing to configure: give a resolution, encoding, rotation, quality or controls"
        )
    return settings
