"""A dataset as Meshroom (AliceVision) reads it: an SfMData file and a sensor database.

:func:`export_meshroom` writes, to ``<dataset>/meshroom`` by default:

- ``cameraInit.sfm``: AliceVision's SfMData (JSON) of the dataset: one *view* per image (its
  absolute path, size, capture as ``frameId``), one *intrinsic* per camera and set of intrinsics
  (see :func:`~.colmap.colmap_model`), and the known poses in the object's frame. Recorded
  intrinsics are written as calibrated ``pinhole`` cameras, locked so that AliceVision keeps
  them; a camera without them gets a ``radial3`` camera from COLMAP's prior, to refine. Known
  poses are written locked too. ``meshroom_batch --input cameraInit.sfm`` (or a CameraInit
  node's ``viewpoints`` and ``intrinsics``) starts a reconstruction from it.
- ``sensor_db.txt``: the sensor width of every camera model of the dataset, in AliceVision's
  ``Make;Model;SensorWidth;Source`` format, for a CameraInit reading the JPEGs' EXIF itself
  (its ``sensorDatabase``).
- ``image-list.txt``: every image's absolute path.

The file follows SfMData version 1.0.0 (one focal length in pixels, the principal point from the
top-left corner), which every AliceVision release reads; a camera whose pixels are not square
needs version 1.2.0 (two focal lengths), which the whole file then declares. AliceVision stores a
pose as the world-to-camera rotation, column after column, and the camera's centre.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Calibration
from .colmap import ColmapCamera, ColmapModel, export_model, write_export
from .geometry import camera_centre
from .manifest import load_manifest

__all__ = ["MeshroomExport", "export_meshroom"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshroomExport:
    """What :func:`export_meshroom` wrote.

    Attributes
    ----------
    folder : Path
        Holds ``cameraInit.sfm``, ``sensor_db.txt`` and ``image-list.txt``.
    model : ColmapModel
        The cameras and images written.
    sensors : dict of tuple to float
        ``(make, model)`` -> sensor width in millimetres, as written to ``sensor_db.txt``.
    """

    folder: Path
    model: ColmapModel
    sensors: dict[tuple[str, str], float]


def _text(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _camera_records(root: Path) -> dict[str, dict[str, Any]]:
    cameras = load_manifest(root).get("cameras")
    return {str(k): v for k, v in cameras.items() if isinstance(v, dict)} if isinstance(cameras, dict) else {}


def _sensor(record: dict[str, Any]) -> tuple[float, float] | None:
    intrinsics = record.get("intrinsics")
    sensor = intrinsics.get("sensor_mm") if isinstance(intrinsics, dict) else None
    if isinstance(sensor, list) and len(sensor) == 2 and all(isinstance(v, (int, float)) for v in sensor):
        width, height = float(sensor[0]), float(sensor[1])
        if width > 0 and height > 0:
            return width, height
    return None


def _make_model(record: dict[str, Any]) -> tuple[str, str] | None:
    device = record.get("camera_model")
    if not isinstance(device, dict):
        return None
    make, model = device.get("make"), device.get("model")
    if not (isinstance(make, str) and isinstance(model, str) and make and model):
        return None
    if ";" in make + model or "\n" in make + model:
        return None  # would break the database's lines
    return make, model


def _intrinsic(camera: ColmapCamera, record: dict[str, Any]) -> dict[str, Any]:
    sensor = _sensor(record) or (-1.0, -1.0)
    common = {
        "intrinsicId": str(camera.camera_id),
        "width": str(camera.width),
        "height": str(camera.height),
        "sensorWidth": _text(sensor[0]),
        "sensorHeight": _text(sensor[1]),
        "serialNumber": camera.name,
    }
    if camera.known:
        fx, fy, cx, cy = camera.params
        focal: Any = _text(fx) if fx == fy else [_text(fx), _text(fy)]
        return common | {
            "type": "pinhole",
            "initializationMode": "calibrated",
            "pxInitialFocalLength": _text(fx),
            "pxFocalLength": focal,
            "principalPoint": [_text(cx), _text(cy)],
            "distortionParams": [],
            "locked": "1",
        }
    f, cx, cy, _k = camera.params
    return common | {
        "type": "radial3",
        "initializationMode": "estimated",
        "pxInitialFocalLength": _text(f),
        "pxFocalLength": _text(f),
        "principalPoint": [_text(cx), _text(cy)],
        "distortionParams": ["0", "0", "0"],
        "locked": "0",
    }


def _sfm_data(model: ColmapModel, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cameras = {camera.camera_id: camera for camera in model.cameras}
    intrinsics = [_intrinsic(camera, records.get(camera.name, {})) for camera in model.cameras]
    square = all(not isinstance(i["pxFocalLength"], list) for i in intrinsics)
    if not square:
        for intrinsic in intrinsics:
            if not isinstance(intrinsic["pxFocalLength"], list):
                intrinsic["pxFocalLength"] = [intrinsic["pxFocalLength"]] * 2
    views, poses = [], []
    for image in model.images:
        camera = cameras[image.camera_id]
        view = {
            "viewId": str(image.image_id),
            "poseId": str(image.image_id),
            "intrinsicId": str(image.camera_id),
            "path": str((model.root / image.name).resolve()),
            "width": str(camera.width),
            "height": str(camera.height),
            "metadata": {},
        }
        if image.capture is not None:
            view["frameId"] = str(image.capture)
        views.append(view)
        if image.pose is not None:
            rotation, translation = image.pose
            poses.append(
                {
                    "poseId": str(image.image_id),
                    "pose": {
                        "transform": {
                            "rotation": [_text(v) for v in np.asarray(rotation).flatten(order="F")],
                            "center": [_text(v) for v in camera_centre(rotation, translation)],
                        },
                        "locked": "1",
                    },
                }
            )
    version = ["1", "0", "0"] if square else ["1", "2", "0"]
    data: dict[str, Any] = {"version": version, "views": views, "intrinsics": intrinsics}
    if poses:
        data["poses"] = poses
    return data


def _sensors(model: ColmapModel, records: dict[str, dict[str, Any]]) -> dict[tuple[str, str], float]:
    sensors: dict[tuple[str, str], float] = {}
    for camera in model.cameras:
        record = records.get(camera.name, {})
        device, sensor = _make_model(record), _sensor(record)
        if device is not None and sensor is not None:
            sensors.setdefault(device, sensor[0])
    return sensors


def export_meshroom(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    calibration: Calibration | None = None,
) -> MeshroomExport:
    """Write the Meshroom (AliceVision) input of a dataset.

    Parameters
    ----------
    dataset : path
        The dataset folder.
    out : path, optional
        Where to write; ``<dataset>/meshroom`` by default. Files already there are replaced.
    calibration : Calibration, optional
        Replaces the recorded intrinsics and poses of the cameras it names; recorded in
        ``calibration.json`` beside the files.

    Returns
    -------
    MeshroomExport

    Raises
    ------
    ValidationError
        If the dataset is not one, or holds no image Meshroom can read.
    """
    model, folder = export_model(dataset, out, calibration, "meshroom")
    records = _camera_records(model.root)
    sensors = _sensors(model, records)
    texts = {
        "cameraInit.sfm": json.dumps(_sfm_data(model, records), indent=4) + "\n",
        "sensor_db.txt": "".join(
            f"{make};{device};{width!r};plantimager\n" for (make, device), width in sensors.items()
        ),
        "image-list.txt": "".join(f"{(model.root / image.name).resolve()}\n" for image in model.images),
    }
    write_export(folder, texts, model.calibration)
    logger.info(
        "dataset %s: Meshroom input of %d camera(s), %d image(s) (%d posed) in %s",
        model.root,
        len(model.cameras),
        len(model.images),
        len(model.posed),
        folder,
    )
    return MeshroomExport(folder, model, sensors)
