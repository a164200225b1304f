"""Camera geometry of a dataset's images: intrinsics as matrices, poses relative to the object.

The manifest records each camera's pose in the rig's fixed frame (z up along the turntable axis).
During a scan the object turns, not the cameras; what photogrammetry needs is where each camera was
relative to the object. A turntable at angle ``a`` carries an object point ``p`` to ``turn(a) @ p``
(counter-clockwise seen from above), so a camera with rig pose ``(R, t)`` has, in the object's frame,
the pose ``(R @ turn(a), t)``: turning the object by ``a`` looks the same as moving the camera by
``-a`` around it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plantimager.commons.errors import ValidationError

__all__ = ["camera_centre", "image_angle", "intrinsic_matrix", "object_pose", "turn"]


def turn(angle_deg: float) -> np.ndarray:
    """Rotation about the vertical axis by ``angle_deg`` (counter-clockwise seen from above)."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def object_pose(pose: dict[str, Any], angle_deg: float | None) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R, t)`` in the object's frame for a camera of rig pose ``pose``.

    Parameters
    ----------
    pose : dict
        ``R`` (3 x 3) and ``t`` (3), as the manifest records them.
    angle_deg : float or None
        The turntable's angle at the capture; None (no turntable) leaves the pose as it is.

    Raises
    ------
    ValidationError
        If ``R`` is not a 3 x 3 rotation or ``t`` not 3 finite numbers.
    """
    rotation = np.asarray(pose.get("R"), dtype=float)
    translation = np.asarray(pose.get("t"), dtype=float)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValidationError(
            f"a pose needs R of shape 3x3 and t of 3, got {rotation.shape} and {translation.shape}"
        )
    if not (np.isfinite(rotation).all() and np.isfinite(translation).all()):
        raise ValidationError("a pose must hold finite numbers")
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) < 0:
        raise ValidationError("a pose's R must be a rotation (orthonormal, determinant +1)")
    if angle_deg is None:
        return rotation, translation
    return rotation @ turn(float(angle_deg)), translation


def camera_centre(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Where a camera of world-to-camera pose ``(R, t)`` stands: ``-R^T t``."""
    return -np.asarray(rotation).T @ np.asarray(translation)


def intrinsic_matrix(intrinsics: dict[str, Any]) -> np.ndarray:
    """The 3 x 3 matrix ``K`` of a ``PINHOLE`` intrinsics record."""
    return np.array(
        [
            [float(intrinsics["fx"]), 0.0, float(intrinsics["cx"])],
            [0.0, float(intrinsics["fy"]), float(intrinsics["cy"])],
            [0.0, 0.0, 1.0],
        ]
    )


def image_angle(image: dict[str, Any]) -> float | None:
    """The turntable's angle when a manifest image was taken, or None without a turntable.

    The angle measured once the table settled is preferred to the one planned.
    """
    position = image.get("position") or {}
    for key in ("measured", "angle"):
        value = position.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None
