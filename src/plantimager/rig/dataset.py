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
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from plantimager.commons.errors import PlantImagerError, ValidationError

from .ledger import Ledger
from .manifest import MANIFEST_NAME, manifest_document
from .session import prepare_folder
from .shot import OWED, CaptureState, ShotPlan, ShotState, extension_for
from .storage import TMP_PREFIX, fsync_dir, link_new, sync_file, write_atomically, write_new
from .template import DEFAULT_TEMPLATE, NameTemplate

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


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenImage:
    """An image whose file is durably written into the dataset but not yet recorded in the ledger.

    Attributes
    ----------
    capture_no : int
        Its capture.
    camera : str
        Its camera (``node/camera``).
    file : str
        The file name in the dataset.
    meta : dict
        What the node sent with it, with ``size`` and ``sha256`` of the bytes written.
    """

    capture_no: int
    camera: str
    file: str
    meta: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StagedImage:
    """An image whose bytes are in a temporary file of the dataset: not yet durable, not yet named.

    Attributes
    ----------
    image : WrittenImage
        What it will be once finished (:meth:`Dataset.finish_image`).
    tmp : pathlib.Path
        The temporary file.
    """

    image: WrittenImage
    tmp: Path


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
        self._write_lock = threading.Lock()
        self._generation = self._written = 0
        self._written_at = float("-inf")
        self._lock_fd: int | None = None
        self._captures: dict[int, CaptureState] = {}
        self._files: set[str] = set()
        self.ledger: Ledger | None = None
        new_template = NameTemplate(template) if template is not None else None
        if readonly:
            if not (self.root / STATE_DIR).is_dir():
                raise PlantImagerError(f"{self.root} is not a dataset (it has no {STATE_DIR} folder)")
        else:
            prepare_folder(self.root)
            prepare_folder(self.root / STATE_DIR)
            self._take_lock(lock_timeout)
        try:
            self._load_session(new_template)
            self.ledger = Ledger(self.root / STATE_DIR / "ledger.jsonl", readonly=readonly)
            for record in self.ledger.records:
                self._apply(record)
            if not readonly:
                self._remove_leftovers()
                self._changed()
        except BaseException:
            self.close()
            raise
        logger.debug(
            "dataset %s: %d captures, %d images owed", self.root, len(self._captures), len(self.owed())
        )

    # -- opening ---------------------------------------------------------------------------------
    def _take_lock(self, timeout: float) -> None:
        path = self.root / STATE_DIR / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ValidationError(f"cannot use {self.root} as a dataset folder: {exc.strerror}") from None
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise PlantImagerError(
                        f"dataset {self.root} is in use by another controller (pid {holder})"
                    ) from None
                time.sleep(0.05)  # bounded retry while another controller finishes
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _load_session(self, new_template: NameTemplate | None) -> None:
        path = self.root / STATE_DIR / "session.json"
        try:
            session = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        except (OSError, ValueError) as exc:
            raise PlantImagerError(f"cannot read {path}: {exc}") from None
        if not isinstance(session, dict) or not isinstance(session.get("session_id"), str):
            if self.readonly:
                raise PlantImagerError(f"{path} is missing or damaged")
            now = time.time()
            stamp = datetime.fromtimestamp(now).strftime("%Y%m%d%H%M%S")
            session = {"session_id": f"{stamp}-{secrets.token_hex(3)}", "created": now}
        stored = session.get("template")
        self.template = new_template or NameTemplate(stored if isinstance(stored, str) else DEFAULT_TEMPLATE)
        self.session_id: str = session["session_id"]
        self.created = float(session.get("created", time.time()))
        if not self.readonly and session.get("template") != self.template.text:
            session["template"] = self.template.text
            write_atomically(path, (json.dumps(session, indent=1) + "\n").encode())

    def _remove_leftovers(self) -> None:
        for entry in os.scandir(self.root):
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                logger.info("dataset %s: removing %s left by an interrupted write", self.root, entry.name)
                os.unlink(entry.path)

    # -- ledger replay ---------------------------------------------------------------------------
    def _apply(self, record: Mapping[str, Any]) -> None:
        try:
            kind = record["kind"]
            if kind == "capture":
                self._apply_capture(record)
                return
            capture = self._captures[int(record["capture_no"])]
            if kind == "captured":
                capture.t0, capture.lead_ms = record.get("t0"), record.get("lead_ms")
                capture.skew_ms = record.get("skew_ms")
                for camera, meta in record.get("results", {}).items():
                    shot = capture.shots[camera]
                    shot.status, shot.meta = "stored", dict(meta)
                    self._rename(shot, record.get("files", {}).get(camera, shot.file))
                for camera, reason in record.get("failures", {}).items():
                    capture.shots[camera].status, capture.shots[camera].reason = "failed", str(reason)
                for camera, reason in record.get("unknown", {}).items():
                    capture.shots[camera].reason = str(reason)
                return
            shot = capture.shots[record["camera"]]
            if kind == "received":
                shot.status = "received"
                shot.meta.update(record.get("meta", {}))
                self._rename(shot, record["file"])
            elif kind == "released":
                shot.status = "done"
            elif kind == "lost":
                shot.status, shot.reason = "lost", str(record.get("reason", ""))
            else:
                logger.warning("dataset %s: ignoring a ledger record of kind %r", self.root, kind)
        except (KeyError, TypeError, ValueError) as exc:
            logger.error(
                "dataset %s: ignoring a ledger record (%s: %s): %.200s",
                self.root,
                type(exc).__name__,
                exc,
                record,
            )

    def _apply_capture(self, record: Mapping[str, Any]) -> None:
        capture = CaptureState(
            int(record["capture_no"]),
            str(record["data_code"]),
            float(record["created"]),
            str(record["template"]),
            position=record.get("position"),
        )
        for item in record["shots"]:
            shot = ShotState(
                capture.capture_no,
                capture.data_code,
                template=capture.template,
                sent_at=capture.created,
                **item,
            )
            capture.shots[shot.camera] = shot
            if shot.wanted:
                self._files.add(shot.file)
        self._captures[capture.capture_no] = capture

    def _rename(self, shot: ShotState, file: str) -> None:
        if file != shot.file and shot.wanted:
            self._files.discard(shot.file)
            self._files.add(file)
        shot.file = file

    def _record(self, record: dict[str, Any], *, durable: bool = True) -> None:
        self._record_many([record], durable=durable)

    def _record_many(self, records: Sequence[dict[str, Any]], *, durable: bool = True) -> None:
        # Lock held: the records and the state they change go together (capture numbers...).
        if self.ledger is None:
            raise PlantImagerError(f"dataset {self.root} is closed")
        self.ledger.append_many(records, durable=durable)
        for record in records:
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
            record = {
                "kind": "capture",
                "capture_no": capture_no,
                "data_code": data_code,
                "created": time.time(),
                "template": self.template.text,
                "shots": shots,
            }
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
            return [
                dataclasses.replace(shot, meta=dict(shot.meta))
                for no in sorted(self._captures)
                for shot in self._captures[no].shots.values()
                if shot.status in OWED
            ]

    def write_image(self, shot: ShotState, data: bytes | memoryview, info: Mapping[str, Any]) -> WrittenImage:
        """Write one image's file durably, without recording it yet (see :meth:`record_images`).

        The same as :meth:`stage_image` then :meth:`finish_image`.

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
            raise PlantImagerError(f"cannot write {self.root / name}: {exc.strerror or exc}") from exc
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
        final = self.root / image.file
        try:
            sync_file(staged.tmp)
            if not link_new(staged.tmp, final, image.meta["sha256"]):
                logger.info("dataset %s: %s was already written", self.root, image.file)
        except OSError as exc:
            raise PlantImagerError(f"cannot write {final}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.tmp.unlink()
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
            raise PlantImagerError(f"cannot write to {self.root}: {exc.strerror or exc}") from exc
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
        """Write one image durably and record it (:meth:`write_image`, then :meth:`record_images`).

        Returns
        -------
        str
            The file name.

        Raises
        ------
        PlantImagerError
            If the file cannot be written or a different file has the name.
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
        """Rewrite the manifest after a change, without making other threads wait for it.

        Each rewrite holds every change made so far, so changes made while one is in progress
        share the next one. With ``max_age``, the rewrite is skipped if the manifest was written
        less than that many seconds ago (:meth:`flush` brings it up to date). The ledger, not the
        manifest, is what a restart relies on: the manifest is rebuilt from it when the dataset is
        opened.
        """
        if self.readonly:
            return
        with self._lock:
            self._generation += 1
            if max_age > 0 and time.monotonic() - self._written_at < max_age:
                return
        while self._write_lock.acquire(blocking=False):
            try:
                self._write_pending()
            finally:
                self._write_lock.release()
            with self._lock:
                if self._written == self._generation:
                    return

    def _write_pending(self) -> None:
        # Write lock held.
        while True:
            with self._lock:
                if self._written == self._generation:
                    return
                generation, document = self._generation, self.manifest()
            write_atomically(
                self.root / MANIFEST_NAME,
                msgspec.json.format(msgspec.json.encode(document), indent=1) + b"\n",
            )
            self._written = generation
            self._written_at = time.monotonic()

    def flush(self) -> None:
        """Return once ``manifest.json`` includes every change made so far."""
        if self.readonly:
            return
        with self._write_lock:
            self._write_pending()

    def manifest(self) -> dict[str, Any]:
        """The content of ``manifest.json`` (see :func:`~plantimager.rig.manifest.manifest_document`)."""
        with self._lock:
            return manifest_document(
                session=self.session_id,
                created=self.created,
                template=self.template.text,
                captures=self._captures.values(),
            )

    def summary(self) -> dict[str, Any]:
        """Counts for a status display: captures, images received, images owed per camera, lost."""
        with self._lock:
            shots = [s for c in self._captures.values() for s in c.shots.values() if s.wanted]
            owed: dict[str, int] = {}
            for shot in shots:
                if shot.status in ("sent", "stored"):
                    owed[shot.camera] = owed.get(shot.camera, 0) + 1
            return {
                "path": str(self.root),
                "session": self.session_id,
                "template": self.template.text,
                "captures": len(self._captures),
                "next_capture_no": self.next_capture_no,
                "images": sum(s.status in ("received", "done") for s in shots),
                "owed": owed,
                "lost": sum(s.status == "lost" for s in shots),
                "failed": sum(s.status == "failed" for s in shots),
            }

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Bring the manifest up to date, close the ledger and let go of the lock. Safe to call twice."""
        if self._lock_fd is not None and self.ledger is not None:
            with contextlib.suppress(OSError, PlantImagerError):
                self.flush()
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
