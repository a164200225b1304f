"""A dataset as COLMAP sees it: cameras, images and known poses, and their text model.

:func:`colmap_model` reads a dataset's manifest and groups its images by the camera geometry they
were taken with: one COLMAP camera per rig camera and set of intrinsics (a camera whose resolution
or rotation changed during a session gets one COLMAP camera per setting). Cameras with recorded
intrinsics become ``PINHOLE`` cameras with those exact numbers; the others get COLMAP's own prior,
a ``SIMPLE_RADIAL`` camera of focal length 1.2 x the image's larger side, for the solver to refine.

:func:`export_colmap` writes the text model COLMAP reads with ``--input_path`` (``cameras.txt``,
``images.txt`` with the poses of the images whose pose is known, in the object's frame, and an empty
``points3D.txt``) and ``image-list.txt``, every image's name relative to the dataset folder (give
the dataset as COLMAP's ``--image_path``). docs/photogrammetry.md shows how to use them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from plantimager.commons.errors import ValidationError
from plantimager.commons.number import is_finite

from .calibration import Calibration
from .geometry import camera_centre, image_angle, object_pose, quaternion
from .manifest import load_manifest
from .session import prepare_folder
from .storage import write_atomically

__all__ = [
    "ColmapCamera",
    "ColmapExport",
    "ColmapImage",
    "ColmapModel",
    "colmap_model",
    "export_colmap",
    "export_model",
    "write_export",
]

logger = logging.getLogger(__name__)

#: COLMAP's prior focal length for an unknown camera, as a factor of the image's larger side.
_PRIOR_FOCAL_FACTOR = 1.2
#: Image files COLMAP reads.
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: a rig camera with one set of intrinsics.

    Attributes
    ----------
    camera_id : int
        COLMAP's id, from 1.
    name : str
        The rig camera's name (``node/camN``).
    model : str
        ``PINHOLE`` (intrinsics known) or ``SIMPLE_RADIAL`` (a prior to refine).
    width, height : int
        Image size in pixels.
    params : tuple of float
        COLMAP's parameters of ``model``: ``fx, fy, cx, cy`` or ``f, cx, cy, k``.
    """

    camera_id: int
    name: str
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    @property
    def known(self) -> bool:
        """True when the intrinsics were recorded, not guessed."""
        return self.model == "PINHOLE"


@dataclass(frozen=True)
class ColmapImage:
    """One image of the dataset.

    Attributes
    ----------
    image_id : int
        COLMAP's id, from 1.
    name : str
        The file, relative to the dataset folder (``/``-separated).
    camera_id : int
        Its :class:`ColmapCamera`.
    camera : str
        The rig camera that took it.
    pose : tuple of arrays or None
        Ground-truth world-to-camera ``(R, t)`` in the object's frame (the turntable's angle taken
        out), or None when the camera's pose is unknown.
    capture : int or None
        The capture that took it (its rig frame), None if the manifest does not say.
    """

    image_id: int
    name: str
    camera_id: int
    camera: str
    pose: tuple[np.ndarray, np.ndarray] | None
    capture: int | None = None


@dataclass(frozen=True)
class ColmapModel:
    """A dataset's cameras and images, ready for COLMAP.

    Attributes
    ----------
    root : Path
        The dataset folder (COLMAP's image path).
    cameras : list of ColmapCamera
    images : list of ColmapImage
    skipped : dict
        Files of the manifest left out, and why (missing on disk, not an image COLMAP reads).
    calibration : dict or None
        The calibration in force (:meth:`~.calibration.Calibration.record`), None without one.
    """

    root: Path
    cameras: list[ColmapCamera]
    images: list[ColmapImage]
    skipped: dict[str, str]
    calibration: dict[str, Any] | None = None

    @property
    def posed(self) -> list[ColmapImage]:
        """The images whose pose is known."""
        return [image for image in self.images if image.pose is not None]

    def centres(self) -> dict[str, np.ndarray]:
        """Image name -> the centre of the camera that took it, in the object's frame (posed images)."""
        return {image.name: camera_centre(*image.pose) for image in self.images if image.pose is not None}


@dataclass(frozen=True)
class ColmapExport:
    """What :func:`export_colmap` wrote.

    Attributes
    ----------
    folder : Path
        Holds ``cameras.txt``, ``images.txt``, ``points3D.txt`` and ``image-list.txt``.
    model : ColmapModel
        The cameras and images written.
    """

    folder: Path
    model: ColmapModel


def _image_name(entry: dict[str, Any]) -> str:
    name = entry.get("file")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a manifest image has no file name: {entry!r:.200}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValidationError(f"manifest image file {name!r} is not a plain path inside the dataset")
    return name


def _number(record: dict[str, Any], key: str, what: str) -> float:
    value = record.get(key)
    if not is_finite(value):
        raise ValidationError(f"{what}: {key} must be a finite number, got {value!r}")
    return float(value)


def _pinhole(intrinsics: dict[str, Any], what: str) -> tuple[int, int, tuple[float, ...]]:
    if intrinsics.get("model") != "PINHOLE":
        raise ValidationError(f"{what}: intrinsics model {intrinsics.get('model')!r} is not PINHOLE")
    width, height = (_number(intrinsics, key, what) for key in ("width", "height"))
    params = tuple(_number(intrinsics, key, what) for key in ("fx", "fy", "cx", "cy"))
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise ValidationError(f"{what}: image size must be whole pixels >= 1, got {width} x {height}")
    if params[0] <= 0 or params[1] <= 0:
        raise ValidationError(f"{what}: focal lengths must be > 0, got {params[:2]}")
    return int(width), int(height), params


def _prior(path: Path) -> tuple[int, int, tuple[float, ...]]:
    with Image.open(path) as image:  # reads the header only
        width, height = image.size
    return width, height, (_PRIOR_FOCAL_FACTOR * max(width, height), width / 2.0, height / 2.0, 0.0)


def _calibrated(entry: dict[str, Any], path: Path, calibration: Calibration | None) -> dict[str, Any]:
    """``entry`` with the calibration's intrinsics and pose of its camera, where it gives them."""
    known = calibration.cameras.get(str(entry.get("camera"))) if calibration else None
    if not known:
        return entry
    out = dict(entry)
    if known["intrinsics"] is not None:
        recorded = entry.get("intrinsics")
        if isinstance(recorded, dict) and "width" in recorded and "height" in recorded:
            size = (recorded["width"], recorded["height"])
        else:
            size = _prior(path)[:2]
        wanted = (known["intrinsics"]["width"], known["intrinsics"]["height"])
        if tuple(size) != wanted:
            raise ValidationError(
                f"{entry['file']}: the calibration of {entry['camera']} is for {wanted[0]} x {wanted[1]} "
                f"images, this one is {size[0]} x {size[1]}"
            )
        out["intrinsics"] = known["intrinsics"]
    if known["pose"] is not None:
        out["pose"] = known["pose"]
    return out


def colmap_model(dataset: str | os.PathLike[str], calibration: Calibration | None = None) -> ColmapModel:
    """The cameras and images of the dataset in ``dataset``, as COLMAP needs them.

    An image's pose in the object's frame is its camera's pose turned by the turntable's angle at
    its capture. In a dataset where some captures have a turntable angle (scans), an image whose
    capture has none (a plain capture, with the table wherever it was) has no known place
    relative to the object: it is given without a pose.

    Parameters
    ----------
    dataset : path
        The dataset folder.
    calibration : Calibration, optional
        Intrinsics and poses (see :func:`~.calibration.load_calibration`) that replace those the
        cameras recorded.

    Raises
    ------
    ValidationError
        If ``dataset`` is not a dataset (see :func:`~.manifest.load_manifest`), an image's file
        name, intrinsics or pose is malformed (the message names the file), or the calibration
        names cameras the dataset does not have or is for another image size.
    """
    root = Path(dataset)
    manifest = load_manifest(root)
    if calibration is not None:
        calibration.check_names({str(e.get("camera")) for e in manifest["images"] if isinstance(e, dict)})
    cameras: dict[tuple[str, str, int, int, tuple[float, ...]], ColmapCamera] = {}
    images: list[ColmapImage] = []
    skipped: dict[str, str] = {}
    entries = sorted(
        (e for e in manifest["images"] if isinstance(e, dict)),
        key=lambda e: (e.get("capture_no") or 0, str(e.get("camera"))),
    )
    turned = any(image_angle(entry) is not None for entry in entries)
    unplaced: list[str] = []
    for entry in entries:
        name = _image_name(entry)
        path = root / name
        if path.suffix.lower() not in _IMAGE_SUFFIXES:
            skipped[name] = f"COLMAP does not read {path.suffix or 'files without a suffix'}"
            continue
        if not path.is_file():
            skipped[name] = "missing from the dataset folder"
            continue
        entry = _calibrated(entry, path, calibration)
        camera = str(entry.get("camera"))
        intrinsics = entry.get("intrinsics")
        if isinstance(intrinsics, dict):
            model, (width, height, params) = "PINHOLE", _pinhole(intrinsics, name)
        else:
            model, (width, height, params) = "SIMPLE_RADIAL", _prior(path)
        key = (camera, model, width, height, params)
        if key not in cameras:
            cameras[key] = ColmapCamera(len(cameras) + 1, camera, model, width, height, params)
        pose = None
        if isinstance(entry.get("pose"), dict) and turned and image_angle(entry) is None:
            unplaced.append(name)
        elif isinstance(entry.get("pose"), dict):
            try:
                pose = object_pose(entry["pose"], image_angle(entry))
            except ValidationError as exc:
                raise ValidationError(f"{name}: {exc}") from None
        capture = entry.get("capture_no")
        capture = capture if isinstance(capture, int) and not isinstance(capture, bool) else None
        images.append(ColmapImage(len(images) + 1, name, cameras[key].camera_id, camera, pose, capture))
    if skipped:
        logger.warning("dataset %s: %d image(s) left out: %s", root, len(skipped), skipped)
    if unplaced:
        logger.warning(
            "dataset %s: %d image(s) taken outside a scan, the turntable's angle unknown: given without a "
            "pose (%s)",
            root,
            len(unplaced),
            ", ".join(unplaced[:5]) + (", ..." if len(unplaced) > 5 else ""),
        )
    record = calibration.record() if calibration is not None else None
    return ColmapModel(root, list(cameras.values()), images, skipped, record)


def _cameras_txt(model: ColmapModel) -> str:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(model.cameras)}",
    ]
    for cam in model.cameras:
        params = " ".join(repr(float(p)) for p in cam.params)
        lines.append(f"{cam.camera_id} {cam.model} {cam.width} {cam.height} {params}")
    return "\n".join(lines) + "\n"


def _images_txt(model: ColmapModel) -> str:
    posed = model.posed
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(posed)} (those of known pose, in the object's frame)",
    ]
    for image in posed:
        rotation, translation = image.pose
        values = [*quaternion(rotation), *(float(v) for v in translation)]
        lines.append(f"{image.image_id} {' '.join(repr(v) for v in values)} {image.camera_id} {image.name}")
        lines.append("")
    return "\n".join(lines) + "\n"


def export_model(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    calibration: Calibration | None,
    default: str,
) -> tuple[ColmapModel, Path]:
    """The model of a dataset to export, and the folder to write it to (``<dataset>/<default>``).

    Raises :class:`ValidationError` if the dataset is not one or holds no image to export.
    """
    model = colmap_model(dataset, calibration)
    if not model.images:
        raise ValidationError(f"{model.root} holds no image to export")
    folder = Path(out) if out is not None else model.root / default
    prepare_folder(folder, "folder to export to")
    return model, folder


def write_export(folder: Path, texts: dict[str, str], calibration: dict[str, Any] | None) -> None:
    """Write an export's files to ``folder``, each replaced whole, and the calibration in force.

    ``calibration.json`` records ``calibration``; without one, an earlier export's is removed.
    """
    if calibration is not None:
        texts = {**texts, "calibration.json": json.dumps(calibration, indent=2) + "\n"}
    elif (folder / "calibration.json").exists():
        (folder / "calibration.json").unlink()  # an earlier export's, no longer in force
    for file_name, text in texts.items():
        write_atomically(folder / file_name, text.encode("utf-8"))


def export_colmap(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    calibration: Calibration | None = None,
) -> ColmapExport:
    """Write the COLMAP text model of a dataset.

    Parameters
    ----------
    dataset : path
        The dataset folder.
    out : path, optional
        Where to write; ``<dataset>/colmap`` by default. Files already there are replaced.
    calibration : Calibration, optional
        Replaces the recorded intrinsics and poses of the cameras it names; recorded in
        ``calibration.json`` beside the model.

    Returns
    -------
    ColmapExport

    Raises
    ------
    ValidationError
        If the dataset is not one, or holds no image COLMAP can read.
    """
    model, folder = export_model(dataset, out, calibration, "colmap")
    texts = {
        "cameras.txt": _cameras_txt(model),
        "images.txt": _images_txt(model),
        "points3D.txt": "# 3D point list (none: COLMAP triangulates them)\n",
        "image-list.txt": "".join(f"{image.name}\n" for image in model.images),
    }
    write_export(folder, texts, model.calibration)
    logger.info(
        "dataset %s: COLMAP model of %d camera(s), %d image(s) (%d posed) in %s",
        model.root,
        len(model.cameras),
        len(model.images),
        len(model.posed),
        folder,
    )
    return ColmapExport(folder, model)
