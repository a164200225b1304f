"""A camera's geometry as stored with each image: intrinsics and pose, turned with the image.

A node may store its stills turned by 90, 180 or 270 degrees; the pinhole and the pose a backend
reports describe the sensor's image, so they are turned here the same way before they are written
into the image's metadata and its EXIF. Conventions are COLMAP's (see
:mod:`plantimager.commons.examples.pinhole`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plantimager.commons.errors import ValidationError

__all__ = ["focal_35mm", "rotate_optics"]

#: A quarter turn clockwise of the image, applied to camera coordinates: x' = -y, y' = x.
_QUARTER = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
#: Diagonal of a 36 x 24 mm frame, for 35 mm equivalent focal lengths.
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


def rotate_optics(optics: dict[str, Any], rotation: int) -> dict[str, Any]:
    """Return ``optics`` (see ``CameraBackend.optics``) for the image turned clockwise by ``rotation``.

    Raises
    ------
    ValidationError
        If ``rotation`` is not 0, 90, 180 or 270.
    """
    if rotation not in (0, 90, 180, 270):
        raise ValidationError(f"rotation must be 0, 90, 180 or 270, got {rotation!r}")
    out = dict(optics)
    intrinsics = dict(optics["intrinsics"]) if optics.get("intrinsics") else None
    pose = optics.get("pose")
    rot = np.asarray(pose["R"], dtype=float) if pose else None
    t = np.asarray(pose["t"], dtype=float) if pose else None
    for _ in range(rotation // 90):
        if intrinsics is not None:
            height = intrinsics["height"]
            intrinsics.update(
                width=height,
                height=intrinsics["width"],
                fx=intrinsics["fy"],
                fy=intrinsics["fx"],
                cx=height - intrinsics["cy"],
                cy=intrinsics["cx"],
            )
            if intrinsics.get("sensor_mm"):
                intrinsics["sensor_mm"] = list(reversed(intrinsics["sensor_mm"]))
        if rot is not None:
            rot, t = _QUARTER @ rot, _QUARTER @ t
    out["intrinsics"] = intrinsics
    if pose:
        out["pose"] = {**pose, "R": rot.tolist(), "t": t.tolist()}
    return out


def focal_35mm(intrinsics: dict[str, Any]) -> float:
    """The 35 mm equivalent focal length of a pinhole: same diagonal field of view."""
    # The image diagonal over the focal length, in focal lengths: 2 tan(diagonal field / 2).
    spread = math.hypot(intrinsics["width"] / intrinsics["fx"], intrinsics["height"] / intrinsics["fy"])
    return _FULL_FRAME_DIAGONAL_MM / spread
