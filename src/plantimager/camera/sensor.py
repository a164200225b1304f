"""What a Raspberry Pi camera module's optics are, from its sensor model and libcamera's properties.

libcamera reports the sensor (``camera_properties["Model"]``), its pixel array and usually the pixel
size (``UnitCellSize``, nanometres) but not the lens. The modules with a fixed lens have a known
focal length, listed in :data:`SENSORS`; modules with interchangeable lenses (HQ, Global Shutter)
need ``focal_mm`` from the user. The pinhole given is *nominal*: principal point at the centre, the
still scaled from the largest centred crop of the sensor with the still's aspect ratio (what
libcamera picks for a still configuration). A calibration (``docs/photogrammetry.md``) replaces it.

Examples
--------
>>> k = sensor_optics({"Model": "imx219", "PixelArraySize": (3280, 2464)}, (1640, 1232))["intrinsics"]
>>> round(k["fx"], 1), k["cx"]
(1357.1, 820.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plantimager.commons.errors import ValidationError
from plantimager.commons.number import is_finite

__all__ = ["SENSORS", "Sensor", "check_focal_mm", "sensor_optics"]


@dataclass(frozen=True)
class Sensor:
    """A camera module: its pixel pitch and, for a fixed lens, its focal length."""

    module: str
    pixel_um: float
    focal_mm: float | None


#: Sensor model (as libcamera names it) -> module, from the Raspberry Pi camera documentation.
SENSORS: dict[str, Sensor] = {
    "ov5647": Sensor("Camera Module 1", 1.4, 3.60),
    "imx219": Sensor("Camera Module 2", 1.12, 3.04),
    "imx708": Sensor("Camera Module 3", 1.4, 4.74),
    "imx708_noir": Sensor("Camera Module 3 NoIR", 1.4, 4.74),
    "imx708_wide": Sensor("Camera Module 3 Wide", 1.4, 2.75),
    "imx708_wide_noir": Sensor("Camera Module 3 Wide NoIR", 1.4, 2.75),
    "imx500": Sensor("AI Camera", 1.55, 4.74),
    "imx477": Sensor("HQ Camera", 1.55, None),
    "imx296": Sensor("Global Shutter Camera", 3.45, None),
}


def check_focal_mm(focal_mm: Any) -> float | None:
    """Return ``focal_mm`` as a float (or None), refusing what is not a lens's focal length."""
    if focal_mm is None:
        return None
    if isinstance(focal_mm, bool) or not isinstance(focal_mm, (int, float)) or not 0.5 <= focal_mm <= 1000:
        raise ValidationError(f"focal_mm must be a number of millimetres in [0.5, 1000], got {focal_mm!r}")
    return float(focal_mm)


def sensor_optics(
    properties: dict[str, Any], resolution: tuple[int, int], focal_mm: float | None = None
) -> dict[str, Any]:
    """The make, model and nominal pinhole of stills of ``resolution`` from this camera.

    Parameters
    ----------
    properties : dict
        Picamera2's ``camera_properties`` (``Model``, ``PixelArraySize`` or
        ``PixelArrayActiveAreas``, ``UnitCellSize`` when known).
    resolution : tuple of int
        The still's ``(width, height)``.
    focal_mm : float, optional
        The lens's focal length; the module's own when omitted and known.

    Returns
    -------
    dict
        As :meth:`CameraBackend.optics <plantimager.camera.backend.CameraBackend.optics>`;
        ``intrinsics`` is None when the focal length or the pixel size is unknown.
    """
    model = str(properties.get("Model") or "unknown")
    known = SENSORS.get(model)
    out: dict[str, Any] = {
        "make": "Raspberry Pi",
        "model": f"{known.module} ({model})" if known else model,
        "intrinsics": None,
        "pose": None,
    }
    focal = focal_mm if focal_mm is not None else (known.focal_mm if known else None)
    cell = properties.get("UnitCellSize")
    pitch_um = cell[0] / 1000.0 if _pair(cell) else (known.pixel_um if known else None)
    area = _active_size(properties)
    if focal is None or pitch_um is None or area is None:
        return out
    width, height = int(resolution[0]), int(resolution[1])
    # The largest centred crop of the active area with the still's aspect ratio, scaled to it.
    scale = min(area[0] / width, area[1] / height)  # sensor pixels per still pixel
    pitch_mm = pitch_um / 1000.0 * scale
    out["intrinsics"] = {
        "model": "PINHOLE",
        "width": width,
        "height": height,
        "fx": focal / pitch_mm,
        "fy": focal / pitch_mm,
        "cx": width / 2.0,
        "cy": height / 2.0,
        "focal_mm": focal,
        "sensor_mm": [width * pitch_mm, height * pitch_mm],
        "source": "nominal" if focal_mm is None else "nominal, focal_mm given",
    }
    return out


def _pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(is_finite(v) and v > 0 for v in value)


def _active_size(properties: dict[str, Any]) -> tuple[int, int] | None:
    """Width and height of the sensor's active pixel area, or None if libcamera does not say."""
    areas = properties.get("PixelArrayActiveAreas")
    first = areas[0] if isinstance(areas, (tuple, list)) and areas else None
    if isinstance(first, (tuple, list)) and len(first) == 4 and _pair(first[2:]):
        return int(first[2]), int(first[3])
    size = properties.get("PixelArraySize")
    return (int(size[0]), int(size[1])) if _pair(size) else None
