"""A dataset: the folder of one session, its images, ``manifest.json`` and the controller's ledger.

Layout::

    <dataset>/manifest.json              every image received, with its metadata (rewritten atomically)
    <dataset>/id<node>_d<n>_cam<i>.jpeg  the images (names from the file-name template)
    <dataset>/.rig/session.json          session id, creation time, file-name template
    <dataset>/.rig/ledger.jsonl          what was captured and what each camera still owes
    <dataset>/.rig/lock                  held by the one controller using the dataset

Every step that must survive a controller crash is in the ledger before it takes effect: a capture
number and the cameras to fire are recorded (fsynced) before the capture command is sent, so numbers
are never reused and the cameras are asked for their images even if the controller dies right after
sending; an image is written to a temporary file, fsynced and linked to its final name, and recorded,
before its node is told it may delete it. Data codes (the capture's name on the nodes) carry the
session id, so two sessions never use the same code on a node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from plantimager.commons.errors import PlantImagerError, ValidationError

from .ledger import Ledger
from .manifest import MANIFEST_NAME, CaptureParts, manifest_bytes, manifest_document
from .manifestwriter import ManifestWriter
from .replay import LedgerState
from .session import load_session, prepare_folder
from .shot import ShotPlan, ShotState, StagedImage, WrittenImage, extension_for
from .storage import (
    TMP_PREFIX,
    disk_error,
    fsync_dir,
    lock_exclusively,
    publish_file,
    remove_temporaries,
    write_new,
)
from .template import NameTemplate

__all__ = [
    "MANIFEST_INTERVAL_S",
    "STATE_DIR",
    "UNKNOWN_RESULT_GRACE_S",
    "Dataset",
    "StagedImage",
    "WrittenImage",
]

logger = logging.getLogger(__name__)

#: The dataset's own folder, inside the dataset.
STATE_DIR = ".rig"
#: A capture whose result never reached the controller is taken as never stored after this long.
UNKNOWN_RESULT_GRACE_S = 180.0
#: While images are being recorded, the manifest is rewritten at most this often, seconds.
MANIFEST_INTERVAL_S = 1.0


class Dataset:
    """The folder of one session: images, manifest and ledger. Thread-safe.

    Opening a dataset creates the folder if needed, takes its lock (one controller at a time),
    replays the ledger, removes temporary files left by a crash and rewrites the manifest.

    Parameters
    ----------
    root : path
        The dataset folder.
    template : str, optional
        File-name template for new captures (see :mod:`plantimager.rig.template`); by default the
        one the dataset used last, else PEPI's names. A new template is remembered.
    readonly : bool
        Only read the state (no folder created, no lock, nothing written).
    lock_timeout : float
        How long to wait for another controller to let go of the dataset, seconds.

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder (absolute).
    session_id : str
        Random id of the session; part of every data code.
    template : NameTemplate
        The template of new captures.

    Raises
    ------
    ValidationError
        If the folder cannot be created or written, or the template is not acceptable.
    PlantImagerError
        If another controller holds the dataset, or its files cannot be read.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        template: str | None = None,
        readonly: bool = False,
        lock_timeout: float = 2.0,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.readonly = readonly
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._state = LedgerState(self.root)
        self._captures = self._state.captures
        self._files = self._state.files
        self._apply = self._state.apply
        self._entries: dict[int, CaptureParts] = {}  # the manifest entries of each capture, by version
        self._manifest = ManifestWriter(
            self.root / MANIFEST_NAME, lambda: manifest_bytes(**self._manifest_sources()), self._lock
        )
        self.ledger: Ledger | None = None
        new_template = NameTemplate(template) if template is not None else None
        if readonly:
            if not (self.root / STATE_DIR).is_dir():
                raise PlantImagerError(f"{self.root} is not a dataset (it has no {STATE_DIR} folder)")
        else:
            prepare_folder(self.root)
            prepare_folder(self.root / STATE_DIR)
            self._lock_fd = lock_exclusively(
                self.root / STATE_DIR / "lock", lock_timeout, f"dataset {self.root}"
            )
        try:
            session = load_session(self.root / STATE_DIR / "session.json", new_template, readonly=readonly)
            self.template: NameTemplate = session.template
            self.session_id: str = session.session_id
            self.created: float = session.created
            self.ledger = Ledger(self.root / STATE_DIR / "ledger.jsonl", readonly=readonly)
            for record in self.ledger.records:
                self._apply(record)
            if not readonly:
                remove_temporaries(self.root, f"dataset {self.root}")
                self._changed()
        except BaseException:
            self.close()
            raise
        logger.debug(
            "dataset %s: %d captures, %d images owed", self.root, len(self._captures), len(self.owed())
        )

    # -- opening ---------------------------------------------------------------------------------
    def _record(self, record: dict[str, Any], *, durable: bool = True) -> None:
        # Lock held: the record and the state it changes go together (capture numbers...).
        if self.ledger is None:
            raise PlantImagerError(f"dataset {self.root} is closed")
        self.ledger.append_many([record], durable=durable)
        self._apply(record)

    def _append(self, records: Sequence[dict[str, Any]], *, durable: bool = True) -> None:
        # For records of shots that only one thread changes (an image written, a release): the
        # ledger write and fsync happen without the lock, so other threads are not held up.
        ledger = self.ledger
        if ledger is None:
            raise PlantImagerError(f"dataset {self.root} is closed")
        ledger.append_many(records, durable=durable)
        with self._lock:
            for record in records:
                self._apply(record)

    # -- capturing -------------------------------------------------------------------------------
    @property
    def next_capture_no(self) -> int:
        """The number the next capture will get."""
        with self._lock:
            return max(self._captures, default=0) + 1

    def begin_capture(
        self, plans: Sequence[ShotPlan], *, position: Mapping[str, Any] | None = None
    ) -> list[ShotState]:
        """Take the next capture number, name its images and record all that durably.

        Call this before sending the capture command. Nothing is written if a name is refused.
        ``position`` (JSON-friendly) is recorded with the capture: where the object stood.

        Returns
        -------
        list of ShotState
            Copies of the new shots, in the order of ``plans`` (all share ``capture_no`` and
            ``data_code``).

        Raises
        ------
        ValidationError
            If a file name is not acceptable or already taken (in this capture, by an earlier
            capture, or by a file in the folder).
        """
        if not plans:
            raise ValidationError("a capture needs at least one camera")
        with self._lock:
            capture_no = self.next_capture_no
            data_code = f"{self.session_id}-d{capture_no}"
            shots, seen, clashes = [], set(), []
            for plan in plans:
                name = self.template.render(
                    server_id=plan.node,
                    node_id=plan.node_id,
                    capture_no=capture_no,
                    camera_no=plan.camera_index,
                    camera=plan.camera_name,
                    ext=plan.ext,
                )
                if plan.wanted and (name in seen or name in self._files or os.path.lexists(self.root / name)):
                    clashes.append(f"{plan.camera} -> {name}")
                seen.add(name)
                item = dataclasses.asdict(plan)
                del item["ext"]
                shots.append({**item, "file": name})
            if clashes:
                raise ValidationError(
                    f"file-name template {self.template.text!r} gives names already taken in {self.root}: "
                    + "; ".join(clashes)
                )
            record = {"kind": "capture", "capture_no": capture_no, "data_code": data_code}
            record.update(created=time.time(), template=self.template.text, shots=shots)
            if position is not None:
                record["position"] = dict(position)
            self._record(record)
            capture = self._captures[capture_no]
            return [dataclasses.replace(capture.shots[s["camera"]]) for s in shots]

    def finish_capture(
        self,
        capture_no: int,
        *,
        t0: float,
        lead_ms: float,
        results: Mapping[str, Mapping[str, Any]],
        failures: Mapping[str, str],
        unknown: Mapping[str, str],
        skew_ms: float | None,
    ) -> dict[str, str]:
        """Record what the nodes answered; returns camera -> file name of every stored image.

        Parameters
        ----------
        capture_no : int
            The capture.
        t0, lead_ms : float
            The instant sent, and how far ahead it was.
        results : mapping
            Camera -> the metadata its node stored.
        failures : mapping
            Camera -> reason, for cameras their node reported failed (nothing owed).
        unknown : mapping
            Camera -> reason, for cameras whose node did not answer (the image may exist).
        skew_ms : float or None
            Spread of the capture times.
        """
        with self._lock:
            capture = self._captures[capture_no]
            files = {
                camera: self._file_for(capture.shots[camera], meta.get("encoding"))
                for camera, meta in results.items()
            }
            record = {
                "kind": "captured",
                "capture_no": capture_no,
                "t0": t0,
                "lead_ms": lead_ms,
                "skew_ms": skew_ms,
                "results": {camera: dict(meta) for camera, meta in results.items()},
                "files": files,
                "failures": dict(failures),
                "unknown": dict(unknown),
            }
            self._record(record)
        self._changed()
        return files

    def _file_for(self, shot: ShotState, encoding: Any) -> str:
        """The shot's file name, made again if the node encoded otherwise than planned."""
        ext = extension_for(encoding)
        if not shot.wanted or shot.file.endswith(f".{ext}") or "{ext}" not in shot.template:
            return shot.file
        name = NameTemplate(shot.template).render(
            server_id=shot.node,
            node_id=shot.node_id,
            capture_no=shot.capture_no,
            camera_no=shot.camera_index,
            camera=shot.camera_name,
            ext=ext,
        )
        if name != shot.file and (name in self._files or os.path.lexists(self.root / name)):
            raise ValidationError(f"{shot.camera}: file name {name!r} is already taken in {self.root}")
        return name

    # -- downloading -----------------------------------------------------------------------------
    def owed(self) -> list[ShotState]:
        """Copies of the shots that still need work (fetch, or release), oldest capture first."""
        with self._lock:
            return self._state.owed()

    def released_held(self, node: str, held: Mapping[str, Iterable[int]]) -> list[ShotState]:
        """Copies of the shots of ``node`` already released that it holds (data code -> camera indices)."""
        with self._lock:
            return self._state.released_held(node, held)

    def write_image(self, shot: ShotState, data: bytes | memoryview, info: Mapping[str, Any]) -> WrittenImage:
        """Write one image's file durably, not recorded yet: :meth:`stage_image`, :meth:`finish_image`.

        Parameters
        ----------
        shot : ShotState
            The image's shot.
        data : bytes or memoryview
            The bytes, already verified.
        info : mapping
            What the node sent with them; ``sha256`` is taken as the bytes' checksum.

        Raises
        ------
        PlantImagerError
            If the file cannot be written or a different file has the name.
        """
        return self.finish_image(self.stage_image(shot, data, info))

    def stage_image(self, shot: ShotState, data: bytes | memoryview, info: Mapping[str, Any]) -> StagedImage:
        """Write one image's bytes to a new temporary file of the dataset; not durable yet.

        The kernel starts writing the file to disk at once; :meth:`finish_image` waits for that
        and gives the file its name. Splitting the two lets a downloader receive the next image
        while the disk catches up. Until finished and recorded, the image is still owed: a crash
        leaves only a temporary file, removed when the dataset is next opened.

        Parameters
        ----------
        shot, data, info
            As for :meth:`write_image`.

        Raises
        ------
        PlantImagerError
            If the file cannot be written, or the node's encoding asks for a name already taken.
        """
        view = memoryview(data).cast("B")
        sha = str(info.get("sha256") or hashlib.sha256(view).hexdigest())
        with self._lock:
            name = self._file_for(self._captures[shot.capture_no].shots[shot.camera], info.get("format"))
        tmp = self.root / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            write_new(tmp, view, durable=False)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise disk_error("write", self.root / name, exc) from exc
        meta = {k: v for k, v in info.items() if k not in ("data_code", "file", "seq")}
        meta.update(size=view.nbytes, sha256=sha)
        return StagedImage(WrittenImage(shot.capture_no, shot.camera, name, meta), tmp)

    def finish_image(self, staged: StagedImage) -> WrittenImage:
        """Make a staged image durable under its final name, without recording it yet.

        The temporary file is fsynced and linked to the final name. A file already at that name
        is kept if it holds the same bytes (a download interrupted after writing it), else the
        image is refused: nothing is ever overwritten. The temporary file is removed either way.

        Raises
        ------
        PlantImagerError
            If the file cannot be written or a different file has the name.
        """
        image = staged.image
        if not publish_file(staged.tmp, self.root / image.file, image.meta["sha256"]):
            logger.info("dataset %s: %s was already written", self.root, image.file)
        return image

    def record_images(self, images: Sequence[WrittenImage]) -> None:
        """Record images written by :meth:`write_image`, durably, with one folder and one ledger fsync.

        The folder is fsynced first (so the names are on disk), then the records are appended to
        the ledger in one write and fsynced; only then may their nodes be told to delete them. The
        manifest is brought up to date at most once a second here; :meth:`flush` (called at the
        end of every download) writes it in full.

        Raises
        ------
        PlantImagerError
            If the folder or the ledger cannot be written; then none of them is recorded.
        """
        if not images:
            return
        try:
            fsync_dir(self.root)
        except OSError as exc:
            raise disk_error("write to", self.root, exc) from exc
        records = [
            {
                "kind": "received",
                "capture_no": image.capture_no,
                "camera": image.camera,
                "file": image.file,
                "meta": image.meta,
            }
            for image in images
        ]
        self._append(records)
        self._changed(max_age=MANIFEST_INTERVAL_S)

    def store_image(self, shot: ShotState, data: bytes | memoryview, info: Mapping[str, Any]) -> str:
        """Write one image durably and record it (:meth:`write_image`, :meth:`record_images`).

        Returns the file name; raises :class:`PlantImagerError` as :meth:`write_image` does.
        """
        image = self.write_image(shot, data, info)
        self.record_images([image])
        return image.file

    def mark_released(self, *shots: ShotState) -> None:
        """Record that the shots' nodes were told they may delete the images (one ledger write).

        Not fsynced: if the record is lost, the next download asks the node again, which then
        answers that the image is gone, and that is taken as released.
        """
        if not shots:
            return
        records = [{"kind": "released", "capture_no": s.capture_no, "camera": s.camera} for s in shots]
        self._append(records, durable=False)

    def mark_lost(self, shot: ShotState, reason: str) -> None:
        """Record that the shot's node no longer holds the image (it will not be asked again)."""
        with self._lock:
            self._record(
                {"kind": "lost", "capture_no": shot.capture_no, "camera": shot.camera, "reason": reason}
            )
        self._changed()

    # -- manifest and summary --------------------------------------------------------------------
    def _changed(self, max_age: float = 0.0) -> None:
        # Rewrite the manifest (see ManifestWriter.changed); a read-only dataset writes nothing.
        if not self.readonly:
            self._manifest.changed(max_age)

    def flush(self, *, strict: bool = True) -> str:
        """Return once ``manifest.json`` includes every change made so far (see ManifestWriter.flush)."""
        return "" if self.readonly else self._manifest.flush(strict=strict)

    def manifest(self) -> dict[str, Any]:
        """The content of ``manifest.json`` (see :func:`~plantimager.rig.manifest.manifest_document`)."""
        with self._lock:
            return manifest_document(**self._manifest_sources())

    def _manifest_sources(self) -> dict[str, Any]:
        # Lock held. What the manifest is built from; manifest_bytes takes the same.
        return {
            "session": self.session_id,
            "created": self.created,
            "template": self.template.text,
            "captures": self._captures.values(),
            "cache": self._entries,
        }

    def summary(self) -> dict[str, Any]:
        """Counts for a status display: captures, images received, images owed per camera, lost."""
        with self._lock:
            counts = self._state.counts()
            return {
                "path": str(self.root),
                "session": self.session_id,
                "template": self.template.text,
                "captures": len(self._captures),
                "next_capture_no": self.next_capture_no,
                **counts,
            }

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Write the manifest up to date and durably, close the ledger, let go of the lock. Safe twice."""
        if self._lock_fd is not None and self.ledger is not None:
            with contextlib.suppress(OSError, PlantImagerError):
                self._manifest.flush(durable=True)
        if self.ledger is not None:
            self.ledger.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dataset {str(self.root)!r} session {self.session_id}>"
