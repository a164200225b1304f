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
from plantimager.commons.number import finite

__all__ = [
    "align_similarity",
    "camera_centre",
    "image_angle",
    "intrinsic_matrix",
    "object_pose",
    "quaternion",
    "turn",
]


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
        value = finite(position.get(key))
        if value is not None:
            return value
    return None


def quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """The unit quaternion ``(w, x, y, z)`` of a rotation matrix, with ``w >= 0`` (COLMAP's order)."""
    m = np.asarray(rotation, dtype=float)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    w, x, y, z = (float(v) for v in np.asarray(q) / np.linalg.norm(q))
    return (w, x, y, z) if w >= 0 else (-w, -x, -y, -z)


def align_similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``(s, R, t)`` that best maps points ``source`` onto ``target`` (N x 3 each).

    Least squares (Umeyama, 1991): minimises the sum of ``|s R source_i + t - target_i|^2``.

    Raises
    ------
    ValidationError
        If the point sets differ in shape, hold fewer than 3 points or are degenerate.
    """
    src, dst = np.asarray(source, dtype=float), np.asarray(target, dtype=float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValidationError(
            f"alignment needs two sets of at least 3 points in 3D, got {src.shape} and {dst.shape}"
        )
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_src, dst - mu_dst
    variance = (a**2).sum() / len(src)
    if variance < 1e-18:
        raise ValidationError("alignment needs points that are not all in one place")
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / variance)
    return scale, rotation, mu_dst - scale * rotation @ mu_src
