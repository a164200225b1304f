"""Finding and opening Picamera2 and libcamera, with messages a Raspberry Pi user can act on."""

from __future__ import annotations

import importlib
from typing import Any

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.number import is_finite

from .controls import is_int
from .frametime import SENSOR_CLOCKS
from .pixels import STILL_FORMATS

__all__ = ["MISSING_MESSAGE", "check_options", "libcamera_transform", "load_picamera2", "open_camera"]

#: What a user reads when picamera2 cannot be imported.
MISSING_MESSAGE = (
    "the picamera2 backend needs the python3-picamera2 package from Raspberry Pi OS "
    "(apt install python3-picamera2) and a virtual environment created with --system-site-packages"
)


def load_picamera2() -> Any:
    """Import and return the ``picamera2`` module.

    Raises
    ------
    PlantImagerError
        With :data:`MISSING_MESSAGE` when it cannot be imported.
    """
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise PlantImagerError(f"{MISSING_MESSAGE} (importing picamera2 failed: {exc})") from exc


def libcamera_transform(hflip: bool, vflip: bool) -> Any:
    """Return libcamera's ``Transform`` that flips images as asked."""
    try:
        libcamera = importlib.import_module("libcamera")
    except ImportError as exc:
        raise PlantImagerError(f"{MISSING_MESSAGE} (importing libcamera failed: {exc})") from exc
    return libcamera.Transform(hflip=int(hflip), vflip=int(vflip))


def open_camera(module: Any, index: int) -> Any:
    """Open camera ``index`` with the ``picamera2`` ``module``, or say clearly why it cannot be opened."""
    picamera2 = getattr(module, "Picamera2", None)
    if picamera2 is None:
        raise PlantImagerError(f"the picamera2 module found has no Picamera2 class; {MISSING_MESSAGE}")
    try:
        cameras = list(picamera2.global_camera_info())
    except Exception as exc:
        raise PlantImagerError(f"libcamera cannot list the cameras: {exc}") from exc
    if index >= len(cameras):
        found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
        raise PlantImagerError(
            f"there is no camera {index} on this host (cameras found: {found}); check the ribbon cable and "
            "`rpicam-hello --list-cameras`"
        )
    try:
        return picamera2(camera_num=index)
    except Exception as exc:
        raise PlantImagerError(
            f"camera {index} cannot be opened: {exc} (is another program, or another node, using it?)"
        ) from exc


def check_options(
    index: Any,
    buffer_count: Any,
    still_format: Any,
    sensor_clock: Any,
    capture_timeout: Any,
    hflip: Any,
    vflip: Any,
) -> None:
    """Refuse options of the Picamera2 backend that cannot open a camera, naming the option.

    Raises
    ------
    ValidationError
        If an option is out of range or of the wrong type.
    """
    if not (is_int(index) and index >= 0):
        raise ValidationError(f"camera index must be an int >= 0, got {index!r}")
    if not (is_int(buffer_count) and 1 <= buffer_count <= 8):
        raise ValidationError(f"buffer_count must be an int in [1, 8], got {buffer_count!r}")
    if still_format not in STILL_FORMATS:
        raise ValidationError(f"still_format must be one of {list(STILL_FORMATS)}, got {still_format!r}")
    if sensor_clock not in SENSOR_CLOCKS:
        raise ValidationError(f"sensor_clock must be 'monotonic' or 'boottime', got {sensor_clock!r}")
    if not (is_finite(capture_timeout) and capture_timeout > 0):
        raise ValidationError(f"capture_timeout must be > 0 seconds, got {capture_timeout!r}")
    if not (isinstance(hflip, bool) and isinstance(vflip, bool)):
        raise ValidationError(f"hflip and vflip must be true or false, got {hflip!r}, {vflip!r}")
