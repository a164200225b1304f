"""The camera rig as COLMAP sees it: cameras fixed to each other, one frame per capture.

The cameras of a rig do not move relative to each other, and every capture fires them all at one
instant: in COLMAP's terms (since 3.12) each capture is a *frame* of one *rig*. With a turntable
the object turns between captures, so in the object's frame the whole rig turns around it, one
pose per frame; the pose of each camera in the rig stays the same. Giving COLMAP that constraint
replaces one free pose per image by one per camera and one per capture, which pins down each
camera's place several times better than free poses (see docs/photogrammetry.md).

COLMAP finds a frame's images by their names: an image belongs to the rig camera whose prefix
its name starts with, and images whose names are equal after the prefix make one frame.
:func:`rig_layout` therefore links the dataset's images under ``c<camera>/<capture>.<ext>`` in a
folder of the reconstruction (hard links where it can, copies otherwise), and :func:`rig_config`
describes the rig for :func:`pycolmap.apply_rig_config`, which measures each camera's place in
the rig on a first model built without the constraint.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from .colmap import ColmapModel

__all__ = ["RigLayout", "rig_config", "rig_layout"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RigLayout:
    """The dataset's images as COLMAP's rig needs them named.

    Attributes
    ----------
    folder : Path
        COLMAP's image path: ``c<camera id>/<frame>.<ext>`` below it.
    names : dict of str to str
        Name under :attr:`folder` -> name in the dataset.
    cameras : dict of int to list of str
        COLMAP camera id -> the names under :attr:`folder` of its images.
    frames : int
        Captures that hold images of at least two cameras.
    """

    folder: Path
    names: dict[str, str]
    cameras: dict[int, list[str]]
    frames: int

    def prefix(self, camera_id: int) -> str:
        """The prefix of the names of camera ``camera_id``'s images."""
        return _prefix(camera_id)


def _prefix(camera_id: int) -> str:
    """The folder of camera ``camera_id``'s images in the layout (what the rig config names)."""
    return f"c{camera_id:03d}/"


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(source, target)


def rig_layout(model: ColmapModel, folder: Path) -> RigLayout:
    """Link ``model``'s images under ``folder`` with names that group them into frames.

    An image's frame is its capture; an image without a capture number, or a second image of one
    camera in the same capture, is a frame of its own.
    """
    if folder.exists():
        shutil.rmtree(folder)
    taken: set[tuple[int, int]] = set()
    names: dict[str, str] = {}
    cameras: dict[int, list[str]] = {}
    members: Counter[str] = Counter()
    for image in model.images:
        capture = image.capture
        if capture is not None and (image.camera_id, capture) not in taken:
            taken.add((image.camera_id, capture))
            frame = f"{capture:06d}"
        else:
            frame = f"image{image.image_id:06d}"
        suffix = PurePosixPath(image.name).suffix.lower()
        name = f"{_prefix(image.camera_id)}{frame}{suffix}"
        _place(model.root / image.name, folder / name)
        names[name] = image.name
        cameras.setdefault(image.camera_id, []).append(name)
        members[frame] += 1
    frames = sum(1 for count in members.values() if count >= 2)
    return RigLayout(folder, names, cameras, frames)


def rig_config(pycolmap: ModuleType, layout: RigLayout, first: Any) -> Any | None:
    """COLMAP's rig of the cameras placed in the model ``first``, or None if there is no rig to make.

    The reference camera is the one with the most registered images; a camera is part of the rig
    when one of its images is registered in a frame where the reference's is too (COLMAP measures
    its place in the rig from those). The others keep free poses.
    """
    registered = {first.images[image_id].name for image_id in first.reg_image_ids()}
    frames_of = {
        camera: {PurePosixPath(name).stem for name in names if name in registered}
        for camera, names in layout.cameras.items()
    }
    if len(frames_of) < 2 or layout.frames < 2:
        return None
    reference = max(frames_of, key=lambda camera: (len(frames_of[camera]), -camera))
    members = [
        camera
        for camera in sorted(frames_of)
        if camera == reference or frames_of[camera] & frames_of[reference]
    ]
    if len(members) < 2:
        return None
    left_out = sorted(set(frames_of) - set(members))
    if left_out:
        logger.warning("cameras %s share no registered capture with the others: not in the rig", left_out)
    config = pycolmap.RigConfig()
    config.cameras = [
        pycolmap.RigConfigCamera(image_prefix=layout.prefix(camera), ref_sensor=camera == reference)
        for camera in members
    ]
    return config
