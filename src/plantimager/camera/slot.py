"""A camera as the node holds it: its backend, the settings the node applies, and image helpers.

The backend knows resolution and controls; the node adds what happens to a frame after capture:
rotation, encoding (JPEG via simplejpeg or PNG via Pillow) and JPEG quality. :func:`plan_settings`
checks a settings dict against a camera without changing anything, :func:`apply_settings` applies
what it returned, so a node can check every camera before changing any.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from plantimager.commons.errors import ValidationError

from .backend import CameraBackend, clamp_resolution
from .names import validate_name

__all__ = [
    "ENCODINGS",
    "EXTENSIONS",
    "ROTATIONS",
    "SETTING_KEYS",
    "CameraSlot",
    "apply_settings",
    "check_camera_names",
    "check_quality",
    "decode_image",
    "encode_image",
    "plan_settings",
    "preview_jpeg",
    "raw_pixels",
    "rotate",
    "transcode",
]

logger = logging.getLogger(__name__)

#: Encodings a camera can store its stills in.
ENCODINGS = ("jpeg", "png")
#: File extension of each encoding, in the spool.
EXTENSIONS = {"jpeg": "jpeg", "png": "png"}
#: Accepted rotations, degrees clockwise.
ROTATIONS = (0, 90, 180, 270)
#: Keys a settings dict may hold.
SETTING_KEYS = ("resolution", "encoding", "rotation", "quality", "controls")
#: Quality of preview JPEG frames.
PREVIEW_QUALITY = 80
#: Longest camera name: it also names the camera's preview stream.
MAX_CAMERA_NAME = 64
#: PNG compression level: fast, and the files are lossless anyway.
PNG_COMPRESS_LEVEL = 1


# -- images ----------------------------------------------------------------------------------------
def rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Return ``image`` turned clockwise by ``rotation`` degrees (0, 90, 180, 270), C-contiguous."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90)))


def encode_image(image: np.ndarray, encoding: str, quality: int = 90) -> bytes:
    """Encode an RGB ``uint8`` image as JPEG (simplejpeg, 4:2:0) or PNG (Pillow, fast level).

    Raises
    ------
    ValidationError
        If ``encoding`` is neither ``"jpeg"`` nor ``"png"``.
    """
    if encoding == "jpeg":
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(image),
            quality=int(quality),
            colorspace="RGB",
            colorsubsampling="420",
            fastdct=True,
        )
    if encoding == "png":
        out = io.BytesIO()
        Image.fromarray(image, "RGB").save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return out.getvalue()
    raise ValidationError(f"unknown encoding {encoding!r}: use 'jpeg' or 'png'")


def decode_image(data: bytes | memoryview, encoding: str) -> np.ndarray:
    """Decode a JPEG or PNG file into an RGB ``uint8`` array."""
    if encoding == "jpeg":
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    if encoding == "png":
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    raise ValidationError(f"unknown encoding {encoding!r}: use 'jpeg' or 'png'")


def transcode(data: bytes | memoryview, source: str, target: str, quality: int = 90) -> bytes | memoryview:
    """Return ``data`` (encoded as ``source``) encoded as ``target``; unchanged when they agree."""
    if source == target:
        return data
    return encode_image(decode_image(data, source), target, quality)


# -- the camera and its settings ---------------------------------------------------------------------
@dataclass
class CameraSlot:
    """A camera of the node: its backend and the settings the node applies to its images.

    Attributes
    ----------
    index : int
        Position in the node's camera list.
    name : str
        Name under which its captures are stored (``cam<index>`` by default).
    backend : CameraBackend
        The camera.
    encoding : str
        ``"jpeg"`` or ``"png"``.
    quality : int
        JPEG quality, 1-100.
    rotation : int
        Clockwise rotation applied to its images, degrees.
    """

    index: int
    name: str
    backend: CameraBackend
    encoding: str = "jpeg"
    quality: int = 90
    rotation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> tuple[str, int, int]:
        """``(encoding, quality, rotation)``, read together."""
        with self.lock:
            return self.encoding, self.quality, self.rotation

    def settings(self) -> dict[str, Any]:
        """The camera's settings as sent to clients."""
        width, height = self.backend.resolution
        max_w, max_h = self.backend.max_resolution
        encoding, quality, rotation = self.snapshot()
        return {
            "name": self.name,
            "index": self.index,
            "backend": self.backend.name,
            "resolution": [width, height],
            "max_resolution": [max_w, max_h],
            "encoding": encoding,
            "quality": quality,
            "rotation": rotation,
            "controls": self.backend.controls,
        }


def check_quality(value: Any) -> int:
    """Return ``value`` if it is a JPEG quality (int in 1-100), else raise ``ValidationError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValidationError(f"JPEG quality must be an int in [1, 100], got {value!r}")
    return value


def plan_settings(slot: CameraSlot, settings: Any) -> dict[str, Any]:
    """Check ``settings`` for ``slot`` without changing anything; return what to apply.

    Parameters
    ----------
    slot : CameraSlot
        The camera.
    settings : dict
        Any of ``resolution`` (``[width, height]``, clamped to the camera's range), ``encoding``,
        ``rotation``, ``quality`` and ``controls`` (name -> value).

    Raises
    ------
    ValidationError
        Naming the setting that is not acceptable and what is.
    """
    if not isinstance(settings, dict):
        raise ValidationError(f"settings must be a dict, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        shown = ", ".join(repr(str(k)[:40]) for k in unknown[:5])
        raise ValidationError(f"unknown setting(s) {shown}; use {', '.join(SETTING_KEYS)}")
    plan: dict[str, Any] = {}
    if "resolution" in settings:
        value = settings["resolution"]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValidationError(f"resolution must be [width, height], got {value!r}")
        plan["resolution"] = clamp_resolution(value[0], value[1], slot.backend.max_resolution)
    if "encoding" in settings:
        value = settings["encoding"]
        if not isinstance(value, str) or value not in ENCODINGS:
            raise ValidationError(f"encoding must be 'jpeg' or 'png', got {value!r}")
        plan["encoding"] = value
    if "rotation" in settings:
        value = settings["rotation"]
        if isinstance(value, bool) or not isinstance(value, int) or value not in ROTATIONS:
            raise ValidationError(f"rotation must be one of 0, 90, 180, 270 degrees, got {value!r}")
        plan["rotation"] = value
    if "quality" in settings:
        plan["quality"] = check_quality(settings["quality"])
    if "controls" in settings:
        plan["controls"] = slot.backend.validate_controls(settings["controls"])
    return plan


def apply_settings(slot: CameraSlot, plan: dict[str, Any]) -> None:
    """Apply a plan returned by :func:`plan_settings`."""
    if "resolution" in plan:
        slot.backend.set_resolution(*plan["resolution"])
    if "controls" in plan:
        slot.backend.set_controls(plan["controls"])
    with slot.lock:
        slot.encoding = plan.get("encoding", slot.encoding)
        slot.rotation = plan.get("rotation", slot.rotation)
        slot.quality = plan.get("quality", slot.quality)


def check_camera_names(names: Sequence[str] | None, count: int) -> list[str]:
    """Return the names of ``count`` cameras: ``names`` once checked, else ``cam0``, ``cam1``...

    Raises
    ------
    ValidationError
        If there is no camera, the count differs, a name is invalid, longer than
        :data:`MAX_CAMERA_NAME` or repeated.
    """
    if count < 1:
        raise ValidationError("a camera node needs at least one camera")
    chosen = [f"cam{i}" for i in range(count)] if names is None else list(names)
    if len(chosen) != count:
        raise ValidationError(f"{len(chosen)} camera names given for {count} cameras")
    for name in chosen:
        validate_name(name, kind="camera name")
        if len(name) > MAX_CAMERA_NAME:
            raise ValidationError(f"camera name {name[:40]!r}... is longer than {MAX_CAMERA_NAME} characters")
    if len(set(chosen)) != len(chosen):
        raise ValidationError(f"camera names must differ, got {chosen}")
    return chosen


def preview_jpeg(slot: CameraSlot) -> bytes:
    """One preview frame of ``slot`` (640x480, rotated), as JPEG."""
    image = rotate(slot.backend.capture_lores(), slot.rotation)
    return simplejpeg.encode_jpeg(image, quality=PREVIEW_QUALITY, colorsubsampling="420", fastdct=True)


def raw_pixels(image: np.ndarray, slot: CameraSlot, captured_ns: int) -> tuple[memoryview, dict[str, Any]]:
    """An image as raw RGB bytes (no copy when already contiguous) and its description."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    info = {
        "shape": list(image.shape),
        "dtype": "uint8",
        "camera": slot.name,
        "index": slot.index,
        "rotation": slot.rotation,
        "captured_ns": captured_ns,
    }
    return memoryview(image).cast("B"), info
