"""Structure from motion on a dataset: a sparse model and a point cloud, with COLMAP (pycolmap).

:func:`reconstruct` extracts SIFT features with each camera's recorded intrinsics (see
:func:`~.colmap.colmap_model`), matches pairs of images, and runs COLMAP's incremental mapper.
Small datasets match every pair; larger ones whose images all have a recorded pose match each image
only with the :data:`NEIGHBOURS` images taken nearest to it (in the object's frame: a turntable's
turn moves the cameras around the object), which grows with the images rather than their square.
Intrinsics that were recorded are held fixed; they are refined only when some camera has none.
Then, unless told the cameras moved (``rig=False``), it maps again with the cameras held as one
rig, each capture a frame of it (see :mod:`.colmaprig`), and keeps that model when it registers
as many images. It writes, under ``<dataset>/reconstruction`` by default:

- ``images/``: the dataset's images linked under the names COLMAP's rig needs (hard links: no
  second copy of the bytes where the file system allows them);
- ``database.db``: COLMAP's features and matches (open it in the COLMAP GUI with ``images/`` as
  the image folder), and ``database.json``, what they were made from: the next run reuses them
  while its images, cameras and matching are the same, and the features of the images it had
  when the dataset only gained some (see :mod:`.featuredatabase`);
- ``sparse/``: the largest model, in COLMAP's binary and text formats, its images named as in the
  dataset;
- ``points.ply``: its points, coloured;
- ``summary.json``: :meth:`ReconstructionSummary.to_dict`.

COLMAP's model comes out in a frame and scale of its own. When the images have recorded (or
calibrated) poses, the model is moved onto them before it is written (:mod:`.alignment`):
``sparse/`` and ``points.ply`` are then in the object's frame and in metres, so that a plant's
height can be read off its points. When the poses are ground truth (the simulated rig records
them), the distance of each camera centre from its true place is reported too: a check that the
images reconstruct to the right shape, not only to a model.

pycolmap is an optional dependency: ``pip install 'plantimager[sfm]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from plantimager.commons.errors import PlantImagerError, ValidationError

from .alignment import centre_errors, to_object_frame
from .calibration import Calibration
from .colmap import ColmapModel, colmap_model
from .colmaprig import RigLayout, rig_config, rig_layout
from .featuredatabase import MATCHES, FeatureDatabase, features_record, matches_record
from .session import prepare_folder

__all__ = ["MATCHINGS", "NEIGHBOURS", "PHASES", "ReconstructionSummary", "matching_method", "reconstruct"]

logger = logging.getLogger(__name__)

#: Phases reported to a progress callback, in order.
PHASES = ("features", "matching", "mapping", "rig", "writing")

#: How :func:`reconstruct` may choose the pairs of images whose features it matches.
MATCHINGS = ("auto", "exhaustive", "spatial")
#: Images each image is matched with in spatial matching, nearest first (COLMAP's own default).
NEIGHBOURS = 50

Progress = Callable[[str, int, int], Any]


@dataclass
class ReconstructionSummary:
    """What :func:`reconstruct` made of a dataset.

    Attributes
    ----------
    folder : str
        Where the results are.
    images : int
        Images given to COLMAP.
    registered : int
        Images whose pose the model holds.
    unregistered : list of str
        The others.
    points : int
        3D points of the model.
    reprojection_px : float
        Mean reprojection error of the model's points, in pixels.
    models : int
        Separate models COLMAP made (1 when every image connects); the largest is kept.
    fixed_intrinsics : bool
        True when every camera's intrinsics were recorded and held fixed.
    rig : bool
        True when the model kept was mapped with the cameras held as one rig.
    rig_cameras : int
        Cameras in that rig (0 without one).
    frames : int
        Captures holding images of two cameras or more (the rig's frames).
    ring_radius : float or None
        With ground truth: the median distance of the true camera centres from the vertical axis
        (the radius of a ring of cameras), in the rig's units (metres).
    centre_errors : dict
        With ground truth: image name -> distance of its aligned centre from the true one, in the
        rig's units; empty without ground truth.
    skipped : dict
        Files of the manifest not given to COLMAP, and why.
    calibration : dict or None
        The calibration in force (file, checksum, cameras), None without one.
    matching : str
        How pairs were chosen: ``exhaustive`` (every pair) or ``spatial`` (nearest neighbours).
    pairs : int
        Pairs of images compared (each image's features matched against the other's), whether
        or not they turned out to share any.
    frame : str
        The frame the model is written in: ``object`` (moved onto the images' recorded or
        calibrated poses: the object's frame, their units) or ``colmap`` (COLMAP's own, of
        arbitrary scale: too few registered images have a pose, or their poses do not fit it).
    aligned : int
        Images whose camera centre agreed with its recorded place in that move (0 in COLMAP's
        frame).
    reused : list of str
        What was reused of the previous run in the same folder: ``features`` (of every image, or
        of those it had), and ``matches`` when the matching was the same too; empty when
        everything was made afresh.
    extracted : int
        Images whose features were extracted in this run (the others' were reused).
    """

    folder: str
    images: int
    registered: int
    unregistered: list[str]
    points: int
    reprojection_px: float
    models: int
    fixed_intrinsics: bool
    rig: bool = False
    rig_cameras: int = 0
    frames: int = 0
    ring_radius: float | None = None
    centre_errors: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    matching: str = "exhaustive"
    pairs: int = 0
    frame: str = "colmap"
    aligned: int = 0
    reused: list[str] = field(default_factory=list)
    extracted: int = 0

    @property
    def max_centre_error(self) -> float | None:
        """The largest centre error as a fraction of :attr:`ring_radius`; None without ground truth."""
        if not self.centre_errors or not self.ring_radius:
            return None
        return max(self.centre_errors.values()) / self.ring_radius

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "max_centre_error": self.max_centre_error}


def _pycolmap() -> ModuleType:
    try:
        return importlib.import_module("pycolmap")
    except ImportError as exc:
        raise PlantImagerError(
            "reconstruction needs pycolmap, which is not installed: pip install 'plantimager[sfm]'"
        ) from exc


@contextlib.contextmanager
def _colmap_log(pycolmap: ModuleType) -> Iterator[None]:
    """COLMAP's own log (to stderr) only when this module logs at DEBUG; errors always."""
    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if logger.isEnabledFor(logging.DEBUG) else 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def matching_method(model: ColmapModel, matching: str = "auto", neighbours: int = NEIGHBOURS) -> str:
    """The pairing :func:`reconstruct` uses for ``model`` when asked for ``matching``.

    Parameters
    ----------
    model : ColmapModel
        The dataset's images (see :func:`~.colmap.colmap_model`).
    matching : {"auto", "exhaustive", "spatial"}
        What is asked for; see :func:`reconstruct`.
    neighbours : int
        Images each image is matched with in spatial matching.

    Returns
    -------
    str
        ``"exhaustive"`` or ``"spatial"``.

    Raises
    ------
    ValidationError
        If ``matching`` or ``neighbours`` is not a value above, or spatial matching is asked for
        and an image has no pose (the message names it).
    """
    if matching not in MATCHINGS:
        raise ValidationError(f"matching {matching!r} is not one of {', '.join(MATCHINGS)}")
    if not isinstance(neighbours, int) or isinstance(neighbours, bool) or neighbours < 1:
        raise ValidationError(f"neighbours must be a whole number of at least 1, not {neighbours!r}")
    unposed = [image.name for image in model.images if image.pose is None]
    if matching == "spatial" and unposed:
        raise ValidationError(
            f"spatial matching needs every image's recorded pose: {len(unposed)} of {len(model.images)} "
            f"have none ({', '.join(unposed[:3])}{', ...' if len(unposed) > 3 else ''}); "
            "give a calibration with the cameras' poses, or match exhaustively"
        )
    if matching == "auto":
        # Spatial matching leaves pairs out only when an image has more than `neighbours` others.
        return "spatial" if not unposed and len(model.images) > neighbours + 1 else "exhaustive"
    return matching


def _match(
    pycolmap: ModuleType,
    layout: RigLayout,
    database: Path,
    method: str,
    neighbours: int,
    priors: dict[str, Any] | None,
) -> None:
    """Match features between the pairs ``method`` chooses (spatial: by the images' ``priors``)."""
    if method == "spatial":
        # Each image's camera centre in the object's frame is its position prior: COLMAP pairs
        # it with the images nearest to it, in three dimensions (not only across the ground).
        assert priors is not None  # spatial matching is chosen only when every image has a pose
        with pycolmap.Database.open(str(database)) as db:
            for image in db.read_all_images():
                position = np.asarray(priors[layout.names[image.name]], dtype=float).reshape(3, 1)
                prior = pycolmap.PosePrior(position, pycolmap.PosePriorCoordinateSystem.CARTESIAN)
                db.write_pose_prior(image.image_id, prior)
        pairing = pycolmap.SpatialPairingOptions(
            ignore_z=False, max_num_neighbors=neighbours, max_distance=math.inf
        )
        pycolmap.match_spatial(str(database), pairing_options=pairing)
    else:
        pycolmap.match_exhaustive(str(database))


def _map(
    pycolmap: ModuleType,
    layout: RigLayout,
    database: Path,
    work: Path,
    fixed: bool,
    phase: str,
    progress: Progress,
) -> dict:
    """COLMAP's incremental mapper; intrinsics held ``fixed`` or refined; progress as ``phase``."""
    options = pycolmap.IncrementalPipelineOptions()
    options.ba_refine_focal_length = not fixed
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = not fixed
    total = len(layout.names)
    registered = [0]

    def first_pair() -> None:
        registered[0] = 2
        progress(phase, registered[0], total)

    def next_image() -> None:
        registered[0] += 1
        progress(phase, min(registered[0], total), total)

    progress(phase, 0, total)
    work.mkdir(parents=True)
    return pycolmap.incremental_mapping(
        str(database),
        str(layout.folder),
        str(work),
        options,
        initial_image_pair_callback=first_pair,
        next_image_callback=next_image,
    )


def _largest(models: dict) -> Any:
    return max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))


def _map_rig(
    pycolmap: ModuleType,
    layout: RigLayout,
    first: Any,
    database: Path,
    work: Path,
    fixed: bool,
    progress: Progress,
) -> tuple[Any, int] | None:
    """Map again with the cameras held as one rig: the model and the cameras in the rig, or None.

    None when there is no rig to make (one camera, or one capture) or COLMAP could not use it;
    the model without the rig then stands.
    """
    config = rig_config(pycolmap, layout, first)
    if config is None:
        return None
    try:
        with pycolmap.Database.open(str(database)) as db:
            # The cameras' places in the rig, measured on a copy of the first model.
            pycolmap.apply_rig_config([config], db, pycolmap.Reconstruction(first))
        models = _map(pycolmap, layout, database, work, fixed, "rig", progress)
    except (RuntimeError, ValueError) as exc:
        logger.warning("mapping with the cameras as one rig failed (%s): keeping the model without it", exc)
        return None
    if not models:
        logger.warning("mapping with the cameras as one rig made no model: keeping the model without it")
        return None
    return _largest(models), len(config.cameras)


def reconstruct(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    progress: Progress | None = None,
    calibration: Calibration | None = None,
    rig: bool = True,
    matching: str = "auto",
    neighbours: int = NEIGHBOURS,
    fresh: bool = False,
) -> ReconstructionSummary:
    """Reconstruct a dataset's sparse model and point cloud with COLMAP.

    Parameters
    ----------
    dataset : path
        The dataset folder.
    out : path, optional
        Where to write; ``<dataset>/reconstruction`` by default. A previous reconstruction there
        is replaced; its features, and its matches when the matching is the same, are reused
        while the images and cameras are the same (see :mod:`.featuredatabase`); of a dataset
        grown since, only the new images' features are extracted.
    progress : callable, optional
        Called with ``(phase, done, total)`` as the work goes on; phases are ``features``,
        ``matching``, ``mapping``, ``rig`` (mapping with the rig) and ``writing``.
    calibration : Calibration, optional
        Intrinsics and poses replacing those the cameras recorded (see
        :func:`~.colmap.colmap_model`).
    rig : bool
        Hold the cameras as one rig, fixed to each other during the whole dataset (the images
        of a capture are one frame of it). Give False if cameras were moved between captures.
    matching : {"auto", "exhaustive", "spatial"}
        Which pairs of images to match. ``exhaustive`` matches every pair: the surest, but its
        cost grows with the square of the images (a 36-position scan of 64 cameras is 2.65
        million pairs). ``spatial`` matches each image with the ``neighbours`` images whose
        cameras were nearest to its own in the object's frame, and needs every image's recorded
        (or calibrated) pose. ``auto`` chooses spatial when every image has a pose and there are
        more than ``neighbours + 1`` images, exhaustive otherwise.
    neighbours : int
        Images each image is matched with in spatial matching.
    fresh : bool
        Extract and match again even when the previous run's features and matches fit.

    Returns
    -------
    ReconstructionSummary

    Raises
    ------
    ValidationError
        If ``dataset`` is not a dataset or holds fewer than two images COLMAP can read, if
        ``matching`` or ``neighbours`` is not one of the values above, or if spatial matching is
        asked for and an image has no pose (the message names it).
    PlantImagerError
        If pycolmap is not installed, or COLMAP could not build any model.
    """
    model = colmap_model(dataset, calibration)
    fixed = all(camera.known for camera in model.cameras)
    if len(model.images) < 2:
        raise ValidationError(
            f"{model.root} holds {len(model.images)} usable image(s): reconstruction needs 2"
        )
    method = matching_method(model, matching, neighbours)
    pycolmap = _pycolmap()
    report: Progress = progress or (lambda phase, done, total: None)
    folder = Path(out) if out is not None else model.root / "reconstruction"
    prepare_folder(folder, "reconstruction folder")
    work, sparse = folder / ".models", folder / "sparse"
    for stale in (work, sparse, folder / "points.ply", folder / "summary.json"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    layout = rig_layout(model, folder / "images")
    store = FeatureDatabase(folder)
    database = store.path
    priors = model.centres() if method == "spatial" else None
    made_of = matches_record(features_record(pycolmap, model, layout), method, neighbours, priors)
    reused = store.keep(pycolmap, made_of, fresh=fresh)

    with _colmap_log(pycolmap):
        extracted = store.extract(pycolmap, model, layout, report)
        report("matching", 0, 1)
        if MATCHES not in reused:
            _match(pycolmap, layout, database, method, neighbours, priors)
            store.record(made_of)
        pairs = store.pairs(pycolmap)
        report("matching", 1, 1)
        models = _map(pycolmap, layout, database, work / "free", fixed, "mapping", report)
        if not models:
            shutil.rmtree(work)
            raise PlantImagerError(
                f"COLMAP could not start a model from the {len(model.images)} images of {model.root}: "
                "too few features match between them (more texture, overlap or resolution helps)"
            )
        best = _largest(models)
        rigged = None
        if rig:  # on a copy: the rig changes the database, which the next run may reuse
            copy = store.copy(work / "rig.db")
            rigged = _map_rig(pycolmap, layout, best, copy, work / "rig", fixed, report)
    rig_cameras = 0
    if rigged is not None and rigged[0].num_reg_images() >= best.num_reg_images():
        best, rig_cameras = rigged
    elif rigged is not None:
        logger.warning(
            "as one rig the cameras gave %d registered images, free %d: keeping the free model",
            rigged[0].num_reg_images(),
            best.num_reg_images(),
        )
    for image_id in best.reg_image_ids():  # the dataset's names, for the model and the comparison
        best.images[image_id].name = layout.names[best.images[image_id].name]

    aligned = to_object_frame(pycolmap, model, best)
    report("writing", 0, 1)
    sparse.mkdir()
    best.write(str(sparse))
    best.write_text(str(sparse))
    best.export_PLY(str(folder / "points.ply"))
    shutil.rmtree(work)
    registered = {best.images[image_id].name for image_id in best.reg_image_ids()}
    radius, errors = centre_errors(model, best)
    reprojection = float(best.compute_mean_reprojection_error())
    summary = ReconstructionSummary(
        folder=str(folder),
        images=len(model.images),
        registered=len(registered),
        unregistered=sorted(image.name for image in model.images if image.name not in registered),
        points=int(best.num_points3D()),
        reprojection_px=reprojection if math.isfinite(reprojection) else float("nan"),
        models=len(models),
        fixed_intrinsics=fixed,
        rig=rig_cameras > 0,
        rig_cameras=rig_cameras,
        frames=layout.frames,
        ring_radius=radius,
        centre_errors=errors,
        skipped=model.skipped,
        calibration=model.calibration,
        matching=method,
        pairs=pairs,
        frame="colmap" if aligned is None else "object",
        aligned=aligned or 0,
        reused=list(reused),
        extracted=extracted,
    )
    (folder / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    report("writing", 1, 1)
    logger.info(
        "dataset %s: %d of %d images registered, %d points, %.3f px%s",
        model.root,
        summary.registered,
        summary.images,
        summary.points,
        summary.reprojection_px,
        f", {rig_cameras} cameras as one rig" if rig_cameras else "",
    )
    return summary
