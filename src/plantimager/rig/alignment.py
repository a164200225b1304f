"""A reconstruction against the images' recorded poses: moved into the object's frame, and measured.

COLMAP builds a model in a frame and at a scale of its own. The dataset knows where each camera
stood when it took each image, in the object's frame (z up along the turntable's axis, the table's
top at z = 0, metres): recorded by the camera (the simulated rig's ground truth) or given by a
calibration. :func:`to_object_frame` moves the model there, so that its points can be measured in
metres; :func:`centre_errors` says how far each camera centre is from where it was recorded.

Both work on a ``pycolmap.Reconstruction`` whose images are named as in the dataset.
"""

from __future__ import annotations

import logging
import math
from types import ModuleType
from typing import Any

import numpy as np

from plantimager.commons.errors import ValidationError

from .colmap import ColmapModel
from .geometry import align_similarity

__all__ = ["ALIGN_TOLERANCE", "centre_errors", "to_object_frame"]

logger = logging.getLogger(__name__)

#: Largest distance of a camera centre from its recorded place, once moved, for its image to count
#: in the move: a fraction of the recorded centres' median distance from their centroid.
ALIGN_TOLERANCE = 0.05


def _centres(model: ColmapModel, reconstruction: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Registered images with a recorded pose (sorted names), their model centres, their recorded ones."""
    truth = model.centres()
    found = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.images[image_id]
        if image.name in truth:
            found[image.name] = np.asarray(image.projection_center(), dtype=float)
    names = sorted(found)
    return (
        names,
        np.array([found[name] for name in names]).reshape(-1, 3),
        np.array([truth[name] for name in names], dtype=float).reshape(-1, 3),
    )


def to_object_frame(pycolmap: ModuleType, model: ColmapModel, reconstruction: Any) -> int | None:
    """Move ``reconstruction`` onto the images' recorded poses, in place.

    The similarity (scale, rotation, shift) is COLMAP's robust fit of the model's camera centres
    to the recorded ones (``align_reconstruction_to_locations``, RANSAC with a fixed seed), so an
    image registered astray does not pull it. It needs three registered images with a pose, and
    at least half of them within :data:`ALIGN_TOLERANCE` of their place once moved.

    Parameters
    ----------
    pycolmap : module
        The pycolmap module.
    model : ColmapModel
        The dataset's images and their recorded poses (see :func:`~.colmap.colmap_model`).
    reconstruction : pycolmap.Reconstruction
        The model, its images named as in the dataset.

    Returns
    -------
    int or None
        How many images lie within the tolerance of their recorded place once moved; None when
        the model was not moved (too few registered images with a pose, or poses that no
        similarity fits: logged as a warning).
    """
    names, centres, places = _centres(model, reconstruction)
    if len(names) < 3:
        return None
    spread = float(np.median(np.linalg.norm(places - places.mean(axis=0), axis=1)))
    if not spread > 0:
        return None
    limit = ALIGN_TOLERANCE * spread
    options = pycolmap.RANSACOptions()
    options.max_error = limit
    options.random_seed = 0
    needed = max(3, math.ceil(len(names) / 2))  # COLMAP's success test: that many inliers
    try:
        moved = pycolmap.align_reconstruction_to_locations(reconstruction, names, places, needed, options)
    except (RuntimeError, ValueError) as exc:  # degenerate centres (all on one line, say)
        logger.warning("the model could not be moved onto the recorded poses: %s", exc)
        return None
    if moved is None:
        logger.warning(
            "the model's camera centres do not fit the %d recorded poses: it stays in COLMAP's frame",
            len(names),
        )
        return None
    reconstruction.transform(moved)
    matrix = np.asarray(moved.matrix())  # [scale * R | t]: where the move took each centre
    centres = centres @ matrix[:, :3].T + matrix[:, 3]
    return int(np.count_nonzero(np.linalg.norm(centres - places, axis=1) <= limit))


def centre_errors(model: ColmapModel, reconstruction: Any) -> tuple[float | None, dict[str, float]]:
    """How far each camera centre is from its recorded place, after the best similarity onto them.

    The similarity is the least-squares one over every registered image with a pose (Umeyama's),
    whatever frame the model is in: the errors measure the model's shape, not where it stands.

    Parameters
    ----------
    model : ColmapModel
        The dataset's images and their recorded poses.
    reconstruction : pycolmap.Reconstruction
        The model, its images named as in the dataset.

    Returns
    -------
    tuple of (float or None, dict)
        The median distance of the recorded centres from the vertical axis (a ring's radius), and
        image name -> distance of its aligned centre from the recorded one; (None, {}) with fewer
        than three such images, or when they fix no similarity.
    """
    names, source, target = _centres(model, reconstruction)
    if len(names) < 3:
        return None, {}
    try:
        scale, rotation, shift = align_similarity(source, target)
    except ValidationError:
        return None, {}
    aligned = scale * source @ rotation.T + shift
    errors = np.linalg.norm(aligned - target, axis=1)
    radius = float(np.median(np.hypot(target[:, 0], target[:, 1])))
    return radius, {name: float(error) for name, error in zip(names, errors, strict=True)}
