"""The on-disk spool where a camera node keeps its captures until the controller has them.

A capture is one still from one camera under one data code. It stays on disk, with a small JSON
metadata file beside it, until the controller confirms receipt by calling :meth:`Spool.release`.
Reading never deletes: a failed transfer is simply retried. (PEPI kept decoded frames in RAM and
dropped them on the first retrieve, so a crash or a failed transfer lost them.)

Layout::

    root/.lock                      held (flock) by the one process using the spool
    root/<data_code>/<camera>.<ext> the image bytes, exactly as given to put()
    root/<data_code>/<camera>.json  metadata; its presence means the image is complete
    root/<data_code>/.tmp-*         writes in progress (removed when the spool is opened)

Durability: each file is written to a temporary name in its final directory, flushed and fsynced,
renamed into place, and the directory is fsynced. The image is committed before its metadata, so
after a crash any metadata file describes a complete image; images without metadata and temporary
files are deleted when the spool is opened. A release deletes each capture's metadata, then its
image (renamed away, then deleted on a thread) and removes the data-code folders it empties; all that
is made durable within a second, with one fsync for every release meanwhile (see
:mod:`.spoolrelease`). Valid names (see
:mod:`plantimager.camera.names`) never start with ``.``, so temporary and lock files can never collide
with a data code or a camera.

Memory: the in-memory index holds only each capture's encoded metadata (a few hundred bytes), never
image bytes. :meth:`Spool.read` maps the file read-only instead of copying it into the heap.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plantimager.commons.errors import ImageUnavailable, PlantImagerError, ValidationError
from plantimager.commons.rpc.wire import decode_object, encode

from .names import validate_name
from .spoolentry import (
    LOCK_NAME,
    MAX_META_BYTES,
    TMP_PREFIX,
    Capture,
    Entry,
    SpoolFull,
    commit_files,
    fsync_dir,
    map_image,
    new_record,
    write_durably,
)
from .spoolrecovery import checked_entry, recover_spool
from .spoolrelease import DELETION_SYNC_S, Deletion, Janitor, Released, release_plan, remove_empty_folder

__all__ = ["MAX_META_BYTES", "Capture", "Released", "Spool", "SpoolFull"]

logger = logging.getLogger(__name__)


class Spool:
    """Durable, bounded store of captures awaiting collection by the controller.

    Opening a spool takes an exclusive lock on ``root/.lock`` (one process per spool), removes what
    interrupted writes left behind and rebuilds the index from the metadata files.

    Parameters
    ----------
    root : pathlib.Path
        The spool directory; created if missing.
    max_bytes : int, optional
        Upper bound on the disk the spool may use (images + metadata, including captures being
        written). ``None`` means unbounded. The spool never evicts anything to make room: a
        :meth:`put` that does not fit raises :class:`SpoolFull`.
    deletion_sync_s : float
        Longest wait of a release's deletions for the fsync that makes them durable, seconds.

    Raises
    ------
    ValidationError
        If ``max_bytes`` is not ``None`` or an int >= 0.
    PlantImagerError
        If another process holds the spool.

    Notes
    -----
    All methods are thread-safe. Hashing and writing image bytes happen outside the lock; the
    commit (renames, directory fsyncs, index update) and deletions happen under it.
    """

    def __init__(
        self, root: Path, *, max_bytes: int | None = None, deletion_sync_s: float = DELETION_SYNC_S
    ) -> None:
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
        ):
            raise ValidationError(f"max_bytes must be None or an int >= 0, got {max_bytes!r}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        if created:
            fsync_dir(self.root.parent)
        self._lock_fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise PlantImagerError(f"spool {self.root} is already in use by another process") from None
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, Entry]] = {}
        self._inflight: dict[str, int] = {}
        self._used = 0
        self._reserved = 0
        self._next_seq = 0
        self._closed = False
        self._deletions = Janitor(self.root, deletion_sync_s, self._remove_folder)
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        count = sum(len(c) for c in self._index.values())
        logger.info("spool %s opened: %d captures, %d bytes", self.root, count, self._used)

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        self._index = recover_spool(self.root)
        self._used = sum(e.disk_bytes for cams in self._index.values() for e in cams.values())
        seqs = [e.seq for cams in self._index.values() for e in cams.values()]
        self._next_seq = max(seqs, default=-1) + 1

    def _load_entry(self, code: str, camera: str) -> Entry | None:
        return checked_entry(self.root / code, code, camera)

    def _remove_folder(self, code: str) -> bool:
        # The janitor's: remove an emptied data-code folder unless a capture came back meanwhile.
        with self._lock:
            return (
                code not in self._index
                and code not in self._inflight
                and remove_empty_folder(self.root / code)
            )

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise PlantImagerError(f"spool {self.root} is closed")

    def _entry(self, code: str, camera: str) -> Entry:
        cams = self._index.get(code)
        if cams is None:
            raise ImageUnavailable(f'No images are stored under the data code "{code}"')
        entry = cams.get(camera)
        if entry is None:
            raise ImageUnavailable(f'No image from camera "{camera}" is stored under the data code "{code}"')
        return entry

    def _capture(self, code: str, camera: str, entry: Entry) -> Capture:
        path, meta = self.root / code / entry.file, decode_object(entry.meta_json)
        return Capture(code, camera, path, meta, entry.size, entry.sha256)

    def _reload_key(self, code: str, camera: str, *files: str) -> None:
        # After a failed commit or deletion, make the index say what the disk says and remove
        # those of ``files`` (image names) that no metadata vouches for. Lock held.
        cams = self._index.setdefault(code, {})
        old = cams.pop(camera, None)
        self._used -= old.disk_bytes if old is not None else 0
        loaded = self._load_entry(code, camera)
        if loaded is not None:
            cams[camera] = loaded
            self._used += loaded.disk_bytes
        for name in set(files) - {loaded.file if loaded else ""}:
            with contextlib.suppress(OSError):
                (self.root / code / name).unlink()
        if not cams:
            del self._index[code]

    # ------------------------------------------------------------------ public API

    def put(
        self, data_code: str, camera: str, data: bytes | memoryview, meta: Mapping[str, Any], *, ext: str
    ) -> Capture:
        """Store one capture durably: once this returns, it survives a crash or power loss.

        A capture already stored under the same data code and camera is replaced, as PEPI did
        when a data code was reused. Readers see the old or the new one, never a mix; if the node
        dies mid-replacement the old one may be gone and the new one not yet stored.

        Parameters
        ----------
        data_code, camera : str
            Names checked by :func:`~plantimager.camera.names.validate_name`.
        data : bytes or memoryview
            The encoded image (any C-contiguous buffer), stored byte for byte; it must not change
            until ``put`` returns.
        meta : mapping of str to JSON value
            What the node knows (capture time, requested time, resolution, encoding...). An int
            ``camera_index`` >= 0 orders :meth:`cameras`. The keys ``data_code``, ``camera``,
            ``file``, ``ext``, ``size``, ``sha256``, ``xxh3_128`` and ``seq`` are filled in by the
            spool; one given with another value (say a capture-time checksum that no longer
            matches) is refused.
        ext : str
            File extension without the dot: 1-16 letters or digits, not ``json``.

        Returns
        -------
        Capture

        Raises
        ------
        ValidationError
            If a name, ``ext``, ``data`` or ``meta`` is not acceptable.
        SpoolFull
            If the capture does not fit under ``max_bytes``; nothing is evicted or changed.
        """
        view, index, fixed, extra = new_record(data_code, camera, data, meta, ext)
        size, sha, file = fixed["size"], fixed["sha256"], fixed["file"]
        folder = self.root / data_code
        with self._lock:
            self._check_open()
            seq = self._next_seq
            self._next_seq += 1
            meta_json = encode({**fixed, "seq": seq, **extra})
            need = size + len(meta_json)
            busy, limit = self._used + self._reserved, self.max_bytes
            if limit is not None and busy + need > limit:
                text = f"capture {data_code}/{camera} needs {need} bytes, {busy} of {limit} are in use"
                raise SpoolFull(
                    f"spool {self.root} is full: {text}; release what the controller has", need, busy, limit
                )
            if data_code not in self._index and data_code not in self._inflight and not folder.is_dir():
                folder.mkdir()
                fsync_dir(self.root)
                self._deletions.root_synced()
            self._reserved += need
            self._inflight[data_code] = self._inflight.get(data_code, 0) + 1

        token = secrets.token_hex(8)
        tmp_image = folder / f"{TMP_PREFIX}{token}.img"
        tmp_meta = folder / f"{TMP_PREFIX}{token}.json"
        try:
            write_durably(tmp_image, view)
            write_durably(tmp_meta, memoryview(meta_json))
            with self._lock:
                self._check_open()
                self._commit(
                    data_code, camera, tmp_image, tmp_meta, Entry(seq, index, size, sha, file, meta_json)
                )
        finally:
            for tmp in (tmp_image, tmp_meta):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            with self._lock:
                self._reserved -= need
                left = self._inflight[data_code] - 1
                if left:
                    self._inflight[data_code] = left
                else:
                    del self._inflight[data_code]
                    if data_code not in self._index and not self._closed:
                        emptied = Deletion(self.root)
                        emptied.remove_folder(data_code)
                        self._deletions.add(emptied)
        logger.debug("spool %s: stored %s/%s (%d bytes, seq %d)", self.root, data_code, camera, size, seq)
        return self._capture(data_code, camera, Entry(seq, index, size, sha, file, meta_json))

    def _commit(self, code: str, camera: str, tmp_image: Path, tmp_meta: Path, new: Entry) -> None:
        # Lock held. Order: drop the old metadata (so it can never describe the new image), make
        # the image durable under its final name, then the metadata that vouches for it.
        folder = self.root / code
        old = self._index.get(code, {}).get(camera)
        try:
            commit_files(folder, camera, tmp_image, tmp_meta, new.file, replacing=old is not None)
        except BaseException:
            self._reload_key(code, camera, new.file, *([old.file] if old else []))
            raise
        if old is not None:
            self._used -= old.disk_bytes
            if old.file != new.file:
                with contextlib.suppress(FileNotFoundError):
                    (folder / old.file).unlink()
        self._index.setdefault(code, {})[camera] = new
        self._used += new.disk_bytes

    def get(self, data_code: str, camera: str) -> Capture:
        """Describe a stored capture without reading its image.

        Raises
        ------
        ValidationError
            If a name is not acceptable.
        ImageUnavailable
            If nothing is stored under ``data_code`` for ``camera``.
        """
        validate_name(data_code, kind="data code")
        validate_name(camera, kind="camera name")
        with self._lock:
            self._check_open()
            entry = self._entry(data_code, camera)
        return self._capture(data_code, camera, entry)

    def read(self, data_code: str, camera: str) -> memoryview:
        """Return the image bytes of a capture as a read-only view over a memory map of its file.

        The bytes are not copied into the process heap: pages come from the page cache on demand
        and leave the process's resident set when the view is released (``view.release()`` or
        dropping it), so serving large images keeps resident memory flat. The view stays valid and
        unchanged even if the capture is later replaced or released, since files are only ever
        renamed over or unlinked, never rewritten in place. Use ``bytes(view)`` for a copy.

        Raises
        ------
        ValidationError
            If a name is not acceptable.
        ImageUnavailable
            If nothing is stored under ``data_code`` for ``camera``.
        PlantImagerError
            If the file was changed behind the spool's back.
        """
        validate_name(data_code, kind="data code")
        validate_name(camera, kind="camera name")
        with self._lock:
            self._check_open()
            entry = self._entry(data_code, camera)
            # Open under the lock so we get the file the index describes, not a newer one.
            fd = os.open(self.root / data_code / entry.file, os.O_RDONLY | os.O_CLOEXEC)
        return map_image(fd, entry.size, f"{data_code}/{camera}")

    def list_codes(self) -> list[str]:
        """Return the data codes held, oldest first (by the earliest capture still held)."""
        return list(self.pending())

    def cameras(self, data_code: str) -> list[str]:
        """Return the cameras with a capture under ``data_code``, by ``camera_index`` then store order.

        Raises
        ------
        ImageUnavailable
            If nothing is stored under ``data_code``.
        """
        validate_name(data_code, kind="data code")
        with self._lock:
            self._check_open()
            cams = self._index.get(data_code)
            if cams is None:
                raise ImageUnavailable(f'No images are stored under the data code "{data_code}"')
            return sorted(cams, key=lambda c: cams[c].order())

    def pending(self) -> dict[str, list[str]]:
        """Return every held data code (oldest first) with its cameras (in :meth:`cameras` order)."""
        with self._lock:
            self._check_open()
            snapshot = {code: dict(cams) for code, cams in self._index.items()}
        order = sorted(snapshot, key=lambda c: min(e.seq for e in snapshot[c].values()))
        return {c: sorted(snapshot[c], key=lambda n: snapshot[c][n].order()) for c in order}

    def release(self, data_code: str, cameras: Iterable[str] | None = None) -> int:
        """Delete the captures of ``data_code`` (only those of ``cameras`` if given); returns how many.

        Releases are the only way anything is deleted (see :meth:`release_many`).

        Raises
        ------
        ValidationError
            If a name is not acceptable, or ``cameras`` is a single str.
        ImageUnavailable
            If nothing is stored under ``data_code`` or a listed camera has nothing there; then
            nothing is deleted.
        """
        wanted = release_plan({data_code: cameras})[data_code]
        with self._lock:
            self._check_open()
            cams = self._index.get(data_code)
            if cams is None:
                raise ImageUnavailable(f'No images are stored under the data code "{data_code}"')
            if wanted is None:
                wanted = list(cams)
            unknown = [c for c in wanted if c not in cams]
            if unknown:
                raise ImageUnavailable(
                    f"No image from camera(s) {', '.join(map(repr, unknown))} is stored under the "
                    f'data code "{data_code}"; nothing was released'
                )
            count = self._delete({data_code: wanted})
        logger.debug("spool %s: released %d captures of %s", self.root, count, data_code)
        return count

    def release_many(self, captures: Mapping[str, Iterable[str] | None]) -> Released:
        """Delete many captures at once, durably, with one fsync for all of them (see :mod:`.spoolrelease`).

        What is not stored (released before, or never stored) is reported, not refused.

        Parameters
        ----------
        captures : mapping of str to (list of str or None)
            Data code -> the cameras whose captures to delete (None: all of that data code).

        Returns
        -------
        Released
            How many captures were deleted, and what was asked for that is not stored.

        Raises
        ------
        ValidationError
            If the request or a name in it is not acceptable; then nothing is deleted.
        """
        plan = release_plan(captures)
        todo: dict[str, list[str]] = {}
        missing: dict[str, list[str] | None] = {}
        with self._lock:
            self._check_open()
            for code, wanted in plan.items():
                cams = self._index.get(code)
                if cams is None:
                    missing[code] = wanted
                    continue
                names = list(cams) if wanted is None else wanted
                absent = [c for c in names if c not in cams]
                if absent:
                    missing[code] = absent
                held = [c for c in names if c in cams]
                if held:
                    todo[code] = held
            count = self._delete(todo)
        logger.debug("spool %s: released %d captures of %d data codes", self.root, count, len(todo))
        return Released(count, missing)

    def _delete(self, plan: Mapping[str, list[str]]) -> int:
        # Lock held; every capture of ``plan`` is held. Whatever was deleted is made durable,
        # also when a deletion fails half way.
        deletion = Deletion(self.root)
        try:
            for code, cameras in plan.items():
                cams = self._index[code]
                for camera in cameras:
                    entry = cams[camera]
                    try:
                        deletion.remove(code, camera, entry.file)
                    except BaseException:
                        self._reload_key(code, camera, entry.file)
                        raise
                    del cams[camera]
                    self._used -= entry.disk_bytes
                if not cams:
                    del self._index[code]
                    if code not in self._inflight:
                        deletion.remove_folder(code)
        finally:
            self._deletions.add(deletion)  # files deleted and all made durable soon, on a thread
        return deletion.count

    def finish_deletions(self) -> None:
        """Delete the files of the captures released so far and make that durable, now.

        Otherwise done on a thread of the spool within ``deletion_sync_s``, and when it closes.
        """
        self._deletions.clean()
        self._deletions.sync()

    def usage_bytes(self) -> int:
        """Return the bytes held by stored captures (image and metadata files)."""
        with self._lock:
            return self._used

    def close(self) -> None:
        """Make the deletions durable and release the spool's lock; later calls raise. Safe twice.

        Stored captures stay on disk.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._deletions.close()
        with self._lock:
            os.close(self._lock_fd)
        logger.info("spool %s closed", self.root)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._used} bytes"
        return f"<Spool {str(self.root)!r} {state}>"
