"""What the web app asks of the rig, in plain values: one place between the routes and :class:`Rig`.

Every method here may block (it calls the rig, reads files); the routes call them through
``run_in_threadpool``, never on the event loop.

The dataset: the controller picks the folder captures go to the first time it is needed, the one
given (``dataset``), else the current session under ``captures`` (as ``plantimager rig`` does),
else a new session there, and hands it to the rig with ``Rig.use_dataset``. Until then the gallery
reads the current session's ``manifest.json`` from disk, so a restarted web server shows it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig import CameraInfo, CaptureRecord, DownloadProgress, DownloadReport, Rig
from plantimager.rig.session import DEFAULT_CAPTURES, current_session, session_folder

from .errors import ApiError

__all__ = ["WebController", "camera_path"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"


def camera_path(key: str, suffix: str) -> str:
    """The URL path of a camera's resource, e.g. ``/cameras/node1/cam0/preview.mjpg``."""
    return f"/cameras/{quote(key, safe='/')}/{suffix}"


class WebController:
    """The rig as the web app sees it. Thread-safe.

    Parameters
    ----------
    rig : Rig
        A started rig, created without a dataset (this object chooses it).
    captures : path
        Folder holding one folder per session.
    dataset : path, optional
        The dataset folder to use instead of the current session.
    """

    def __init__(
        self,
        rig: Rig,
        *,
        captures: str | os.PathLike[str] = DEFAULT_CAPTURES,
        dataset: str | os.PathLike[str] | None = None,
    ) -> None:
        self.rig = rig
        self.captures = Path(captures).expanduser().absolute()
        self._folder: Path | None = Path(dataset).expanduser().absolute() if dataset is not None else None
        self._explicit = dataset is not None
        self._opened = False
        self._lock = threading.Lock()
        self._manifest_cache: tuple[tuple[int, int], dict[str, Any]] | None = None

    # -- cameras ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The live rig: cameras with their health, nodes, the registry, the dataset folder."""
        cameras = self.rig.cameras()
        nodes = self.rig.nodes()
        by_name = {node.name: node for node in nodes}
        items = []
        for cam in cameras:
            node = by_name.get(cam.node)
            state = node.state if node is not None else "ready"
            items.append(
                {
                    **cam.as_dict(),
                    "state": state,
                    "healthy": state == "ready",
                    "error": node.error if node is not None else "",
                    "rtt_ms": node.rtt_ms if node is not None else None,
                    "clock_offset_ms": node.clock_offset_ms if node is not None else None,
                    "clock_flag": node.clock_flag if node is not None else "",
                    "preview": camera_path(cam.key, "preview.mjpg"),
                    "view": "/view/" + quote(cam.key, safe="/"),
                }
            )
        healthy = sum(item["healthy"] for item in items)
        folder = self.folder()
        return {
            "count": len(items),
            "healthy": healthy,
            "unhealthy": len(items) - healthy,
            "cameras": items,
            "nodes": [node.as_dict() for node in nodes],
            "failed_nodes": [node.as_dict() for node in nodes if node.state == "failed"],
            "registry": self.rig.registry_url,
            "connected": self.rig.connected,
            "dataset": str(folder) if folder else None,
        }

    def camera(self, key: str) -> CameraInfo:
        """The camera called ``key`` (``node/cam0``).

        Raises
        ------
        ApiError
            404 naming it and listing the cameras there are.
        """
        cameras = self.rig.cameras()
        for cam in cameras:
            if cam.key == key:
                return cam
        listing = ", ".join(c.key for c in cameras[:20]) + (", ..." if len(cameras) > 20 else "")
        raise ApiError(
            404,
            f"unknown camera {key[:100]!r}; the rig has: {listing or 'no camera'}",
            camera=key[:100],
        )

    def target(self, name: str) -> list[CameraInfo]:
        """The cameras of ``name``: one camera (``node/cam0``) or every camera of a node (``node``).

        Raises
        ------
        ApiError
            404 if there is no such camera or node.
        """
        cameras = [cam for cam in self.rig.cameras() if name in (cam.key, cam.node)]
        if not cameras:
            self.camera(name)  # raises the 404 with the list
        return cameras

    # -- dataset --------------------------------------------------------------------------------------
    def folder(self) -> Path | None:
        """The dataset folder in use, or the one the next capture will use if known."""
        if self._folder is not None:
            return self._folder
        return current_session(self.captures)

    def _open_dataset(self, *, create: bool) -> Path:
        with self._lock:
            if self._opened and self._folder is not None:
                return self._folder
            folder = self.folder()
            if folder is None:
                if not create:
                    raise ApiError(409, "nothing was captured yet: press Capture All first")
                folder = session_folder(self.captures)
            self.rig.use_dataset(folder)
            self._folder, self._opened = folder.absolute(), True
            logger.info("captures go to %s", self._folder)
            return self._folder

    def new_session(self) -> dict[str, Any]:
        """Start a new session folder under ``captures``; later captures go there."""
        with self._lock:
            folder = session_folder(self.captures, new=True).absolute()
            self.rig.use_dataset(folder)
            self._folder, self._opened, self._explicit = folder, True, False
        return {"dataset": str(folder)}

    # -- actions --------------------------------------------------------------------------------------
    def capture(self, cameras: list[str] | None) -> dict[str, Any]:
        """Fire ``cameras`` (None: all) at one instant; the capture's outcome, partial or not."""
        self._open_dataset(create=True)
        try:
            record = self.rig.capture(cameras)
        except RigError as exc:
            partial: CaptureRecord | None = getattr(exc, "record", None)
            if partial is None:
                raise
            return capture_result(partial)
        return capture_result(record)

    def download(self, progress: Callable[[DownloadProgress], Any]) -> dict[str, Any]:
        """Fetch what the cameras owe the dataset; the report, partial or not."""
        self._open_dataset(create=False)
        try:
            report = self.rig.download_all(progress=progress)
        except RigError as exc:
            partial: DownloadReport | None = getattr(exc, "report", None)
            if partial is None:
                raise
            return download_result(partial)
        return download_result(report)

    def scan(
        self,
        positions: int,
        turntable: str | None,
        progress: Callable[[Any], Any],
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Run (or finish) a scan into the session's dataset; its report (see ``Rig.scan``).

        Setting ``stop`` ends it after the position under way.
        """
        self._open_dataset(create=True)
        report = self.rig.scan(positions, turntable, progress=progress, stop=stop)
        return {
            "scan": report.scan,
            "total": len(report.angles),
            "taken": len(report.captured),
            "already": len(report.already),
            "complete": report.complete,
            "dataset": str(self._folder),
        }

    def configure(self, name: str | None, settings: dict[str, Any]) -> dict[str, Any]:
        """Apply settings to every camera (``name`` None), one camera or one node's cameras.

        Returns
        -------
        dict
            ``settings`` (camera -> its settings afterwards) and ``failures`` (camera -> reason).

        Raises
        ------
        ApiError
            422 when the cameras refused the values (their reason names the setting and its
            range), 502 when none answered.
        """
        try:
            if name is None:
                result = self.rig.configure_all(**settings)
            else:
                result = self.rig.configure(name, **settings)
            return {"settings": result, "failures": {}}
        except RigError as exc:
            done: dict[str, Any] = getattr(exc, "result", None) or {}
            if done:
                return {"settings": done, "failures": exc.failures}
            # A node that answered with an error is still "ready": the cameras refused the values.
            states = {node.name: node.state for node in self.rig.nodes()}
            refused = all(
                states.get(camera.rpartition("/")[0] or camera) == "ready" for camera in exc.failures
            )
            reasons = sorted(set(exc.failures.values()))
            if refused:
                raise ApiError(
                    422, "; ".join(reasons), field=_setting_named(reasons[0]), failures=exc.failures
                ) from None
            raise ApiError(502, "no camera answered: " + "; ".join(reasons), failures=exc.failures) from None

    def shutdown(self) -> dict[str, Any]:
        """Ask every camera node to stop; the nodes that agreed and those that did not answer."""
        try:
            return {"stopped": self.rig.shutdown_all(), "failures": {}}
        except RigError as exc:
            return {"stopped": getattr(exc, "result", []), "failures": exc.failures}

    # -- gallery and files ----------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        """The dataset's ``manifest.json`` as last written, or None without one (cached by mtime)."""
        folder = self.folder()
        if folder is None:
            return None
        path = folder / _MANIFEST
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._manifest_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            return None
        if not isinstance(document, dict):
            return None
        self._manifest_cache = (key, document)
        return document

    def gallery(self) -> dict[str, Any]:
        """The last capture of the dataset and its images received so far."""
        folder = self.folder()
        document = self.manifest() or {}
        captures = [c for c in document.get("captures", []) if isinstance(c, dict)]
        if not captures:
            return {"dataset": str(folder) if folder else None, "capture": None, "images": []}
        last = max(captures, key=lambda c: int(c.get("capture_no", 0)))
        number = last.get("capture_no")
        images = []
        for image in document.get("images", []):
            if isinstance(image, dict) and image.get("capture_no") == number and image.get("file"):
                name = str(image["file"])
                images.append(
                    {
                        "file": name,
                        "camera": image.get("camera"),
                        "size": image.get("size"),
                        "offset_ms": image.get("offset_ms"),
                        "url": "/dataset/files/" + quote(name),
                        "thumb": "/dataset/thumbs/" + quote(name),
                    }
                )
        capture = {
            "capture_no": number,
            "t0_utc": last.get("t0_utc"),
            "skew_ms": last.get("skew_ms"),
            "cameras": len(last.get("cameras", [])),
            "owed": len(last.get("owed", [])),
            "failures": last.get("failures", {}),
            "lost": last.get("lost", {}),
        }
        return {"dataset": str(folder), "capture": capture, "images": images}

    def dataset_files(self) -> tuple[Path, set[str]] | None:
        """The dataset folder and the names of the images it holds (from its manifest)."""
        folder = self.folder()
        document = self.manifest()
        if folder is None or document is None:
            return None
        names = {str(i["file"]) for i in document.get("images", []) if isinstance(i, dict) and i.get("file")}
        return folder, names


def _setting_named(reason: str) -> str:
    lowered = reason.lower()
    if "control" in lowered:
        return "controls"
    for name in ("resolution", "encoding", "rotation", "quality"):
        if name in lowered:
            return name
    return "settings"


def capture_result(record: CaptureRecord) -> dict[str, Any]:
    """A capture record as the page shows it: how many answered, the skew, clocks off, each shot."""
    asked = len(record.shots) + len(record.failures)
    return {
        "capture_no": record.capture_no,
        "data_code": record.data_code,
        "dataset": str(record.dataset),
        "t0": record.t0,
        "lead_ms": round(record.lead_ms, 3),
        "skew_ms": None if record.skew_ms is None else round(record.skew_ms, 3),
        "answered": len(record.shots),
        "asked": asked,
        "failures": dict(record.failures),
        "clock_offsets_ms": dict(record.clock_offsets_ms),
        "clock_flags": dict(record.clock_flags),
        "shots": [
            {
                "camera": s.camera,
                "file": s.file,
                "offset_ms": round(s.offset_ms, 3),
                "clock_offset_ms": s.clock_offset_ms,
                "size": s.size,
            }
            for s in record.shots
        ],
    }


def download_result(report: DownloadReport) -> dict[str, Any]:
    """A download report as the page shows it."""
    return {
        "dataset": str(report.dataset),
        "files": list(report.files),
        "written": len(report.files),
        "bytes": report.bytes,
        "seconds": round(report.seconds, 3),
        "released": report.released,
        "owed": report.owed,
        "failures": dict(report.failures),
    }


def describe(exc: BaseException) -> str:
    """One line for an error shown on the page."""
    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, PlantImagerError):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
