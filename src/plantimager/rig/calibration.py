"""A rig calibration file: per camera name, its measured intrinsics and optionally its pose.

A calibration (TOML, or JSON by its ``.json`` suffix) overrides what the cameras recorded, when a
dataset is exported or reconstructed::

    # rig.toml
    [cameras."node1/cam0"]
    intrinsics = { width = 4056, height = 3040, fx = 3040.2, fy = 3041.0, cx = 2027.1, cy = 1519.4 }
    pose = { R = [[1, 0, 0], [0, 1, 0], [0, 0, 1]], t = [0, 0, 1.0] }   # optional, rig frame

:func:`load_calibration` checks the whole file before anything uses it; docs/photogrammetry.md
describes the format.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plantimager.commons.errors import ValidationError
from plantimager.commons.number import is_finite

from .geometry import object_pose

__all__ = ["Calibration", "load_calibration"]

_INTRINSIC_KEYS = ("width", "height", "fx", "fy", "cx", "cy")
#: Largest calibration file read, in bytes.
_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Calibration:
    """A checked calibration.

    Attributes
    ----------
    path : str
        The file it was read from.
    sha256 : str
        Checksum of the file, recorded with what it was used for.
    cameras : dict
        Camera name -> ``{"intrinsics": {...} or None, "pose": {"R", "t"} or None}``.
    """

    path: str
    sha256: str
    cameras: dict[str, dict[str, Any]]

    def record(self) -> dict[str, Any]:
        """What a result records of the calibration in force."""
        return {"file": self.path, "sha256": self.sha256, "cameras": sorted(self.cameras)}

    def check_names(self, names: set[str]) -> None:
        """Raise ValidationError if the calibration names cameras not in ``names``."""
        unknown = sorted(set(self.cameras) - names)
        if unknown:
            raise ValidationError(
                f"calibration {self.path} names camera(s) the dataset does not have: {', '.join(unknown)} "
                f"(the dataset's cameras: {', '.join(sorted(names)) or 'none'})"
            )


def _intrinsics(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{where}: intrinsics must be a table, got {type(value).__name__}")
    model = value.get("model", "PINHOLE")
    if model != "PINHOLE":
        raise ValidationError(f"{where}: intrinsics model must be PINHOLE, got {model!r}")
    unknown = sorted(set(value) - {"model", "source", "focal_mm", "sensor_mm", *_INTRINSIC_KEYS})
    if unknown:
        raise ValidationError(f"{where}: unknown intrinsics key(s) {', '.join(unknown)}")
    out: dict[str, Any] = {"model": "PINHOLE", "source": "calibration"}
    for key in _INTRINSIC_KEYS:
        number = value.get(key)
        if not is_finite(number):
            raise ValidationError(f"{where}: intrinsics {key} must be a finite number, got {number!r}")
        if key in ("width", "height") and (number < 1 or number != int(number)):
            raise ValidationError(f"{where}: intrinsics {key} must be whole pixels >= 1, got {number!r}")
        if key in ("fx", "fy") and number <= 0:
            raise ValidationError(f"{where}: intrinsics {key} must be > 0, got {number!r}")
        out[key] = int(number) if key in ("width", "height") else float(number)
    return out


def _pose(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - {"R", "t", "frame"}:
        raise ValidationError(f"{where}: pose must be a table of R (3 x 3) and t (3)")
    try:
        rotation = np.asarray(value.get("R"), dtype=float)
        translation = np.asarray(value.get("t"), dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: pose R and t must be arrays of numbers") from None
    try:
        object_pose({"R": rotation, "t": translation}, None)  # shape, finite, a rotation
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None
    return {"R": rotation.tolist(), "t": translation.tolist(), "frame": "rig"}


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read and check a calibration file.

    Raises
    ------
    ValidationError
        If the file cannot be read or parsed, has no ``cameras`` table, or a camera's entry has
        unknown keys, no intrinsics and no pose, or values of the wrong type or shape (the message
        names the camera and the key).
    """
    file = Path(path)
    try:
        if file.stat().st_size > _MAX_BYTES:
            raise ValidationError(f"calibration {file} is over {_MAX_BYTES} bytes")
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationError(f"calibration {file} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
        document = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"calibration {file} cannot be parsed: {exc}") from None
    cameras = document.get("cameras") if isinstance(document, dict) else None
    if not isinstance(cameras, dict) or not cameras:
        raise ValidationError(f"calibration {file} has no [cameras] table naming at least one camera")
    checked: dict[str, dict[str, Any]] = {}
    for name, entry in cameras.items():
        where = f"calibration {file}, camera {name!r}"
        if not isinstance(entry, dict):
            raise ValidationError(f"{where}: expected a table, got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"intrinsics", "pose"})
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {', '.join(unknown)} (expected intrinsics, pose)")
        if not entry:
            raise ValidationError(f"{where}: give intrinsics, a pose or both")
        checked[name] = {
            "intrinsics": _intrinsics(entry["intrinsics"], where) if "intrinsics" in entry else None,
            "pose": _pose(entry["pose"], where) if "pose" in entry else None,
        }
    return Calibration(str(file), hashlib.sha256(data).hexdigest(), checked)
