"""COLMAP's database of a reconstruction's features and matches, kept for the next run.

Extracting every image's features and matching them take most of a reconstruction's time besides
the mapping, and nothing in them depends on how the model is then mapped. So
:func:`~.reconstruction.reconstruct` keeps ``database.db`` in its folder with a record of what it
was made from (``database.json``):

- for the features: the images (their names as COLMAP saw them, their files' names in the
  dataset, sizes and modification times), the cameras' models and intrinsics, and pycolmap's
  version;
- for the matches: also the matching method, the neighbours of spatial matching and the position
  priors it paired images by.

A run whose features record is the one kept reuses the features; whose matches record is too,
the matches. A dataset that only gained images since (a scan resumed, more positions taken) keeps
the features of the images it had, and only the new images' are extracted (into their cameras'
entries of the database); the matching is done again. Anything else starts again from the
images. The record is written only once matching has finished, and removed before anything is
redone, so a run interrupted half way leaves no record and the next one starts afresh. The
mapping with the cameras held as one rig changes the database (:func:`pycolmap.apply_rig_config`),
so it works on a copy (:meth:`FeatureDatabase.copy`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .colmap import ColmapModel
from .colmaprig import RigLayout

__all__ = ["FEATURES", "MATCHES", "FeatureDatabase", "features_record", "matches_record"]

logger = logging.getLogger(__name__)

#: What a run may reuse of the previous one, in :meth:`FeatureDatabase.keep`'s answer.
FEATURES = "features"
MATCHES = "matches"


def features_record(pycolmap: ModuleType, model: ColmapModel, layout: RigLayout) -> dict[str, Any]:
    """What the features of ``model``'s images, laid out as ``layout``, are made from.

    Parameters
    ----------
    pycolmap : module
        pycolmap (its version is part of the record).
    model : ColmapModel
        The dataset's images and cameras.
    layout : RigLayout
        The names COLMAP sees the images under.

    Returns
    -------
    dict
        Plain data, equal between two runs exactly when their features would be the same.
    """
    images = []
    for name, source in sorted(layout.names.items()):
        stat = (model.root / source).stat()
        images.append([name, source, stat.st_size, stat.st_mtime_ns])
    cameras = [[cam.camera_id, cam.model, [float(p) for p in cam.params]] for cam in model.cameras]
    return {"pycolmap": str(pycolmap.__version__), "images": images, "cameras": cameras}


def matches_record(
    features: dict[str, Any], method: str, neighbours: int, priors: dict[str, Any] | None
) -> dict[str, Any]:
    """What the matches are made from: the features' record, the pairing, and its position priors.

    Parameters
    ----------
    features : dict
        :func:`features_record`'s answer.
    method : str
        ``exhaustive`` or ``spatial``.
    neighbours : int
        Images each image is matched with in spatial matching.
    priors : dict or None
        Spatial matching's position prior of each image (dataset name -> camera centre).

    Returns
    -------
    dict
        Plain data, equal between two runs exactly when their matches would be the same.
    """
    pairing: dict[str, Any] = {"method": method}
    if method == "spatial":
        pairing["neighbours"] = neighbours
        known = sorted((priors or {}).items())
        pairing["priors"] = {name: [float(v) for v in centre] for name, centre in known}
    return {**features, "pairing": pairing}


class FeatureDatabase:
    """``database.db`` of a reconstruction folder and the record of what it was made from.

    Parameters
    ----------
    folder : Path
        The reconstruction's folder.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / "database.db"
        self.record_path = folder / "database.json"

    def keep(self, pycolmap: ModuleType, matches: dict[str, Any], *, fresh: bool = False) -> tuple[str, ...]:
        """Keep what the previous run made that fits this one; remove the rest.

        Parameters
        ----------
        pycolmap : module
            pycolmap, to clear the matches when only the features are kept.
        matches : dict
            This run's :func:`matches_record` (it holds the features' record).
        fresh : bool
            Keep nothing.

        Returns
        -------
        tuple of str
            What is reused: ``()``, ``("features",)`` (of every image, or of those the dataset
            had: :meth:`extract` adds the others) or ``("features", "matches")``.
        """
        kept = None if fresh else self._read_record()
        wanted = _plain(matches)
        if kept == wanted:
            logger.info("reusing the features and matches of %s", self.path)
            return (FEATURES, MATCHES)
        self.record_path.unlink(missing_ok=True)  # from here on the database is being redone
        if kept is not None and _grown(_features_of(kept), _features_of(wanted)):
            logger.info("reusing the features of %s; matching again", self.path)
            with pycolmap.Database.open(str(self.path)) as db:
                db.clear_matches()
                db.clear_two_view_geometries()
                db.clear_pose_priors()
            return (FEATURES,)
        for stale in _sqlite_files(self.path):
            stale.unlink(missing_ok=True)
        return ()

    def extract(
        self,
        pycolmap: ModuleType,
        model: ColmapModel,
        layout: RigLayout,
        progress: Callable[[str, int, int], Any],
    ) -> int:
        """Extract the features of the images the database does not hold yet; returns how many.

        Each camera's images are read with its own intrinsics, into the camera entry its images
        already in the database have, if any. Nothing is extracted (pycolmap is not called) when
        every image's features are there.

        Parameters
        ----------
        pycolmap : module
            pycolmap.
        model : ColmapModel
            The dataset's images and cameras.
        layout : RigLayout
            The names COLMAP sees the images under, and where they are.
        progress : callable
            Called with ``("features", done, total)``.

        Returns
        -------
        int
            Images whose features were extracted now.
        """
        held: dict[str, int] = {}  # name -> its camera's id in the database
        if self.path.exists():
            with pycolmap.Database.open(str(self.path)) as db:
                held = {
                    image.name: image.camera_id
                    for image in db.read_all_images()
                    if db.exists_keypoints(image.image_id) and db.exists_descriptors(image.image_id)
                }
        total = len(model.images)
        missing = {
            cam.camera_id: [n for n in layout.cameras[cam.camera_id] if n not in held]
            for cam in model.cameras
        }
        extracted = sum(len(names) for names in missing.values())
        done = total - extracted
        progress("features", done, total)
        for camera in model.cameras:
            names = missing[camera.camera_id]
            if not names:
                continue
            reader = pycolmap.ImageReaderOptions()
            reader.camera_model = camera.model
            reader.camera_params = ",".join(repr(float(p)) for p in camera.params)
            known = [held[name] for name in layout.cameras[camera.camera_id] if name in held]
            if known:
                reader.existing_camera_id = known[0]
            pycolmap.extract_features(
                str(self.path),
                str(layout.folder),
                image_names=names,
                camera_mode=pycolmap.CameraMode.SINGLE,
                camera_model=camera.model,
                reader_options=reader,
            )
            done += len(names)
            progress("features", done, total)
        return extracted

    def record(self, matches: dict[str, Any]) -> None:
        """Note that the database now holds the features and matches of ``matches``'s record."""
        partial = self.record_path.with_name(self.record_path.name + ".partial")
        partial.write_text(json.dumps(matches) + "\n", encoding="utf-8")
        os.replace(partial, self.record_path)

    def pairs(self, pycolmap: ModuleType) -> int:
        """Pairs of images the database holds matches of."""
        with pycolmap.Database.open(str(self.path)) as db:
            return int(db.num_matched_image_pairs())

    def copy(self, path: Path) -> Path:
        """Copy the database to ``path`` (for a run that changes it); returns ``path``."""
        shutil.copyfile(self.path, path)
        return path

    def _read_record(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            kept = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("%s is unreadable (%s): extracting and matching again", self.record_path, exc)
            return None
        return kept if isinstance(kept, dict) else None


def _plain(record: dict[str, Any]) -> Any:
    """``record`` as it reads back from JSON (tuples become lists), to compare with a kept one."""
    return json.loads(json.dumps(record))


def _features_of(matches: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in matches.items() if key != "pairing"}


def _grown(kept: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the kept features are of the wanted images, or of some of them, as they are now."""
    if {**kept, "images": None} != {**wanted, "images": None}:  # pycolmap, the cameras
        return False
    now = {tuple(entry) for entry in wanted["images"]}
    return all(tuple(entry) in now for entry in kept["images"])


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
