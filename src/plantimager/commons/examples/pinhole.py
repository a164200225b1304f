"""The synthetic scene's camera model: where a simulated camera stands and what its pinhole is.

The renderer (:mod:`.scene`) and the simulated cameras both use these functions, so the intrinsics
and poses a simulated camera reports are the renderer's own, not an estimate.

Conventions are those of OpenCV and COLMAP:

- the world ("rig") frame has z up along the turntable axis, the object standing at the origin;
- a pose ``(R, t)`` maps a world point to camera coordinates, ``x_cam = R @ x_world + t``, with the
  camera looking along +z, x to the right of the image and y down it;
- pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, so the centre of a ``W x H`` image is
  ``(W / 2, H / 2)``.

Examples
--------
>>> from plantimager.commons.examples.pinhole import camera_pose, intrinsics
>>> intrinsics((640, 480))["cx"]
320.0
>>> R, t = camera_pose(0.0, 20.0)
>>> R.shape, t.shape
((3, 3), (3,))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CAMERA_DISTANCE",
    "TARGET",
    "VFOV_DEG",
    "camera_frame",
    "camera_pose",
    "fitted_intrinsics",
    "focal_px",
    "intrinsics",
]

#: Vertical field of view of every simulated camera, in degrees.
VFOV_DEG = 38.0
#: Distance from a simulated camera to the point it looks at, in metres.
CAMERA_DISTANCE = 1.0
#: The point every simulated camera looks at (metres, world frame): mid-height of the plant.
TARGET = np.array([0.0, 0.0, 0.215])


def focal_px(height: float) -> float:
    """Focal length in pixels of an image ``height`` pixels high (square pixels)."""
    return 0.5 * float(height) / math.tan(math.radians(VFOV_DEG) / 2.0)


def camera_frame(
    azimuth_deg: float, elevation_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(position, right, down, forward)`` of a camera at this azimuth and elevation.

    The camera stands :data:`CAMERA_DISTANCE` from :data:`TARGET` and looks at it; ``right``,
    ``down`` and ``forward`` are unit vectors of the world frame along the image's x, y and the
    optical axis.
    """
    el, az = math.radians(float(elevation_deg)), math.radians(float(azimuth_deg))
    offset = CAMERA_DISTANCE * np.array(
        [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
    )
    forward = -offset / np.linalg.norm(offset)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return TARGET + offset, right, down, forward


def camera_pose(azimuth_deg: float, elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera pose ``(R, t)`` of a simulated camera (``x_cam = R @ x_world + t``)."""
    position, right, down, forward = camera_frame(azimuth_deg, elevation_deg)
    rotation = np.stack([right, down, forward])
    return rotation, -rotation @ position


def intrinsics(size: tuple[int, int]) -> dict[str, float | int | str]:
    """The pinhole of a rendering of ``size = (width, height)`` pixels, as a COLMAP ``PINHOLE``."""
    width, height = int(size[0]), int(size[1])
    focal = focal_px(height)
    return {
        "model": "PINHOLE",
        "width": width,
        "height": height,
        "fx": focal,
        "fy": focal,
        "cx": width / 2.0,
        "cy": height / 2.0,
    }


def fitted_intrinsics(source: tuple[int, int], size: tuple[int, int]) -> dict[str, float | int | str]:
    """The pinhole of a rendering of ``source`` size once fitted to ``size``.

    Fitting (as :func:`PIL.ImageOps.fit` does, centred) scales the rendering until it covers
    ``size`` and crops the overflow evenly on both sides: the focal length scales, the principal
    point stays at the centre.
    """
    width, height = int(size[0]), int(size[1])
    scale = max(width / source[0], height / source[1])
    focal = focal_px(source[1]) * scale
    return {
        "model": "PINHOLE",
        "width": width,
        "height": height,
        "fx": focal,
        "fy": focal,
        "cx": width / 2.0,
        "cy": height / 2.0,
    }
