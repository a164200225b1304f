"""EXIF for the stills a node stores: who took the image, when exactly, and through what optics.

Photogrammetry software (COLMAP, Meshroom, Metashape) reads the focal length and the camera from
EXIF, and people sort images by ``DateTimeOriginal``. The tags are built with Pillow's
:class:`PIL.Image.Exif` and inserted as an APP1 segment into the JPEG the encoder made, so the image
data itself is not encoded twice.

Times are UTC (``OffsetTimeOriginal`` says so) with the sub-second part to the microsecond, taken
from the frame's own capture time, not from when it was stored.
"""

from __future__ import annotations

import datetime as dt
import struct
from fractions import Fraction
from typing import Any

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from plantimager.commons.errors import ValidationError

from .optics import focal_35mm

__all__ = ["exif_bytes", "with_exif"]

_SOI = b"\xff\xd8"
_APP0 = b"\xff\xe0"
_APP1 = b"\xff\xe1"
_MAX_SEGMENT = 0xFFFF - 2

# Tag numbers (EXIF 2.32): IFD0, then the Exif sub-IFD.
_IMAGE_DESCRIPTION, _MAKE, _MODEL, _SOFTWARE, _DATETIME = 0x010E, 0x010F, 0x0110, 0x0131, 0x0132
_EXIF_IFD = 0x8769
_EXPOSURE_TIME, _ISO, _DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x829A, 0x8827, 0x9003, 0x9011
_SUBSEC_ORIGINAL, _FOCAL_LENGTH, _FOCAL_35MM = 0x9291, 0x920A, 0xA405
_BODY_SERIAL = 0xA431


def exif_bytes(meta: dict[str, Any], optics: dict[str, Any] | None, *, camera: str, serial: str) -> bytes:
    """Return the EXIF block (``Exif\\0\\0`` and a TIFF structure) describing one still.

    Parameters
    ----------
    meta : dict
        The image's metadata as the node stores it: ``captured_ns`` and ``controls``
        (``ExposureTime`` in microseconds, ``AnalogueGain``) are read.
    optics : dict or None
        What the backend knows of its geometry (``make``, ``model``, ``intrinsics``).
    camera : str
        The camera's name on the rig (e.g. ``node3/cam0``), written as the image description.
    serial : str
        What identifies the camera body (node identity and camera index).
    """
    optics = optics or {}
    exif = Image.Exif()
    exif[_MAKE] = str(optics.get("make") or "unknown")
    exif[_MODEL] = str(optics.get("model") or "unknown")
    exif[_IMAGE_DESCRIPTION] = camera
    exif[_SOFTWARE] = "plantimager"
    extra = exif.get_ifd(_EXIF_IFD)
    seconds, nanoseconds = divmod(int(meta["captured_ns"]), 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y:%m:%d %H:%M:%S")
    exif[_DATETIME] = stamp
    extra[_DATETIME_ORIGINAL] = stamp
    extra[_SUBSEC_ORIGINAL] = f"{nanoseconds // 1000:06d}"
    extra[_OFFSET_TIME_ORIGINAL] = "+00:00"
    extra[_BODY_SERIAL] = serial
    controls = meta.get("controls") or {}
    exposure_us = controls.get("ExposureTime")
    if isinstance(exposure_us, (int, float)) and exposure_us > 0:
        extra[_EXPOSURE_TIME] = _rational(exposure_us / 1e6)
    gain = controls.get("AnalogueGain")
    if isinstance(gain, (int, float)) and gain > 0:
        extra[_ISO] = min(65535, round(100 * gain))
    intrinsics = optics.get("intrinsics")
    if intrinsics:
        if intrinsics.get("focal_mm"):
            extra[_FOCAL_LENGTH] = _rational(float(intrinsics["focal_mm"]))
        extra[_FOCAL_35MM] = min(65535, round(focal_35mm(intrinsics)))
    return exif.tobytes()


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """Return ``jpeg`` with ``exif`` inserted as its APP1 segment (after a JFIF APP0, if any).

    Raises
    ------
    ValidationError
        If ``jpeg`` does not start like a JPEG file or ``exif`` does not fit in one segment.
    """
    if not jpeg.startswith(_SOI):
        raise ValidationError("cannot add EXIF: the data is not a JPEG file (no start-of-image marker)")
    if len(exif) > _MAX_SEGMENT:
        raise ValidationError(f"EXIF block of {len(exif)} bytes does not fit in one JPEG segment")
    at = len(_SOI)
    if jpeg[at : at + 2] == _APP0:
        at += 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
    return b"".join((jpeg[:at], _APP1, struct.pack(">H", len(exif) + 2), exif, jpeg[at:]))


def _rational(value: float) -> IFDRational:
    """A positive number as the EXIF RATIONAL closest to it with a denominator up to 10^6."""
    fraction = Fraction(value).limit_denominator(1_000_000)
    return IFDRational(fraction.numerator, fraction.denominator)
