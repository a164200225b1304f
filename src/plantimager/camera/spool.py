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
image, and fsyncs the folder once per call however many captures it releases (an emptied data-code
folder is removed without a further fsync: if a crash brings it back, empty, opening the spool
removes it). Valid names (see :mod:`plantimager.camera.names`) never start with ``.``, so temporary
and lock files can never collide with a data code or a camera.

Memory: the in-memory index holds only each capture's encoded metadata (a few hundred bytes), never
image bytes. :meth:`Spool.read` maps the file read-only instead of copying it into the heap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

from plantimager.commons.errors import ImageUnavailable, PlantImagerError, ValidationError
from plantimager.commons.rpc.wire import decode_object, encode

from .names import validate_name

__all__ = ["MAX_META_BYTES", "Capture", "Spool", "SpoolFull"]

logger = logging.getLogger(__name__)

MAX_META_BYTES = 64 * 1024
"""Largest accepted metadata document (encoded JSON), so the index stays small."""

_META_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"
_EXT_RE = re.compile(r"[A-Za-z0-9]{1,16}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
# Keys the spool fills in itself; the caller may only repeat them with the same value.
_RESERVED = ("data_code", "camera", "file", "ext", "size", "sha256", "xxh3_128", "seq")


class SpoolFull(PlantImagerError):  # noqa: N818 - named like ImageUnavailable
    """Storing a capture would take the spool beyond its ``max_bytes``; nothing was changed.

    Parameters
    ----------
    message : str
        Human-readable explanation.
    needed, used, max_bytes : int
        Bytes the refused capture needed, bytes in use or being written, and the limit.
    """

    def __init__(self, message: str, needed: int, used: int, max_bytes: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.used = used
        self.max_bytes = max_bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Capture:
    """One stored capture: where its image lies and what its metadata says.

    ``meta`` is a private copy of the full metadata: what the node passed plus ``data_code``,
    ``camera``, ``file``, ``ext``, ``size``, ``sha256``, ``xxh3_128`` and ``seq`` (the spool's store
    sequence number). ``size``, ``sha256`` and ``xxh3_128`` (hex) describe the image bytes; the
    XXH3-128 lets a receiver check a transfer at a tenth of the cost of SHA-256. (Captures stored
    by versions before it have no ``xxh3_128``.)
    """

    data_code: str
    camera: str
    path: Path
    meta: dict[str, Any]
    size: int
    sha256: str


@dataclasses.dataclass(slots=True)
class _Entry:
    # What the index keeps per capture: small values only, never image bytes.
    seq: int
    camera_index: int | None
    size: int
    sha256: str
    file: str
    meta_json: bytes

    @property
    def disk_bytes(self) -> int:
        return self.size + len(self.meta_json)

    def order(self) -> tuple[bool, int, int]:
        return (self.camera_index is None, self.camera_index or 0, self.seq)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, view: memoryview) -> None:
    """Create ``path`` (must not exist), write all of ``view`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        done, total = 0, view.nbytes
        while done < total:
            done += os.write(fd, view[done : done + (1 << 22)])
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_camera_index(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{where}: camera_index must be an int >= 0, got {value!r}")
    return value


def _as_bytes_view(data: Any) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise ValidationError(
            f"image data must be bytes or a bytes-like object, not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValidationError("image data must be a C-contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


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

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
        ):
            raise ValidationError(f"max_bytes must be None or an int >= 0, got {max_bytes!r}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_dir(self.root.parent)
        self._lock_fd = os.open(self.root / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise PlantImagerError(f"spool {self.root} is already in use by another process") from None
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, _Entry]] = {}
        self._inflight: dict[str, int] = {}
        self._used = 0
        self._reserved = 0
        self._next_seq = 0
        self._closed = False
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        count = sum(len(c) for c in self._index.values())
        logger.info("spool %s opened: %d captures, %d bytes", self.root, count, self._used)

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name == _LOCK_NAME:
                continue
            try:
                validate_name(entry.name, kind="data code")
            except ValidationError:
                logger.warning("spool %s: ignoring %r, not a data code", self.root, entry.name)
                continue
            if not entry.is_dir(follow_symlinks=False):
                logger.warning("spool %s: ignoring %r, not a directory", self.root, entry.name)
                continue
            self._recover_code(entry.name)
        seqs = [e.seq for cams in self._index.values() for e in cams.values()]
        self._next_seq = max(seqs, default=-1) + 1

    def _recover_code(self, code: str) -> None:
        folder = self.root / code
        metas: list[str] = []
        others: list[str] = []
        changed = has_subdirs = False
        for entry in os.scandir(folder):
            if entry.name.startswith(_TMP_PREFIX):
                logger.info("spool %s: removing interrupted write %s", self.root, entry.path)
                os.unlink(entry.path)
                changed = True
            elif entry.is_dir(follow_symlinks=False):
                logger.warning("spool %s: leaving unexpected directory %s alone", self.root, entry.path)
                has_subdirs = True
            elif entry.name.endswith(_META_SUFFIX):
                metas.append(entry.name)
            else:
                others.append(entry.name)
        captures: dict[str, _Entry] = {}
        for name in metas:
            loaded = self._load_entry(code, name[: -len(_META_SUFFIX)])
            if loaded is None:
                os.unlink(folder / name)
                changed = True
            else:
                captures[name[: -len(_META_SUFFIX)]] = loaded
        referenced = {e.file for e in captures.values()}
        for name in set(others) - referenced:
            logger.warning("spool %s: removing incomplete capture file %s/%s", self.root, code, name)
            os.unlink(folder / name)
            changed = True
        if changed:
            _fsync_dir(folder)
        if captures:
            self._index[code] = captures
            self._used += sum(e.disk_bytes for e in captures.values())
        elif not has_subdirs:
            self._remove_code_dir(code)

    def _load_entry(self, code: str, camera: str) -> _Entry | None:
        # Read and check one metadata file and the size of the image it vouches for.
        path = self.root / code / f"{camera}{_META_SUFFIX}"
        try:
            validate_name(camera, kind="camera name")
            with open(path, "rb") as fh:
                raw = fh.read(MAX_META_BYTES + 1)
            if len(raw) > MAX_META_BYTES:
                raise ValidationError("metadata file too large")
            meta = decode_object(raw)
            ext, file = meta.get("ext"), meta.get("file")
            size, sha, seq = meta.get("size"), meta.get("sha256"), meta.get("seq")
            if meta.get("data_code") != code or meta.get("camera") != camera:
                raise ValidationError("data_code/camera do not match the file's place")
            if not isinstance(ext, str) or not _EXT_RE.fullmatch(ext) or file != f"{camera}.{ext}":
                raise ValidationError(f"bad ext/file {ext!r}/{file!r}")
            if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
                raise ValidationError(f"bad sha256 {sha!r}")
            for key, value in (("size", size), ("seq", seq)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValidationError(f"bad {key} {value!r}")
            index = _check_camera_index(meta.get("camera_index"), "metadata")
            if os.stat(self.root / code / file, follow_symlinks=False).st_size != size:
                raise ValidationError(f"image {file} is not {size} bytes long")
        except (OSError, PlantImagerError) as exc:
            logger.error("spool %s: dropping metadata %s: %s", self.root, path, exc)
            return None
        return _Entry(seq=seq, camera_index=index, size=size, sha256=sha, file=file, meta_json=raw)

    def _remove_code_dir(self, code: str, *, durable: bool = True) -> None:
        # Called with the lock held (or during recovery); ignores a directory that is not empty.
        # Without ``durable`` the removal may be undone by a crash: harmless, as opening the spool
        # removes empty data-code folders.
        try:
            os.rmdir(self.root / code)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            logger.debug("spool %s: keeping directory %s: %s", self.root, code, exc)
            return
        if durable:
            _fsync_dir(self.root)

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise PlantImagerError(f"spool {self.root} is closed")

    def _entry(self, code: str, camera: str) -> _Entry:
        cams = self._index.get(code)
        if cams is None:
            raise ImageUnavailable(f'No images are stored under the data code "{code}"')
        entry = cams.get(camera)
        if entry is None:
            raise ImageUnavailable(f'No image from camera "{camera}" is stored under the data code "{code}"')
        return entry

    def _capture(self, code: str, camera: str, entry: _Entry) -> Capture:
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
        validate_name(data_code, kind="data code")
        validate_name(camera, kind="camera name")
        if not isinstance(ext, str) or not _EXT_RE.fullmatch(ext) or ext.lower() == "json":
            raise ValidationError(f"invalid extension {ext!r}: must be 1-16 letters or digits, not 'json'")
        view = _as_bytes_view(data)
        if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
            raise ValidationError("meta must be a mapping with str keys")
        index = _check_camera_index(meta.get("camera_index"), f"meta of {data_code}/{camera}")
        size = view.nbytes
        sha = hashlib.sha256(view).hexdigest()
        file = f"{camera}.{ext}"
        fixed: dict[str, Any] = dict(
            data_code=data_code,
            camera=camera,
            file=file,
            ext=ext,
            size=size,
            sha256=sha,
            xxh3_128=xxhash.xxh3_128_hexdigest(view),
        )
        for key in _RESERVED:
            if key in meta and (key == "seq" or meta[key] != fixed[key]):
                shown = "is assigned by the spool" if key == "seq" else f"is {fixed[key]!r}"
                raise ValidationError(f"meta[{key!r}] = {meta[key]!r} conflicts: {key} {shown}")
        extra = {k: v for k, v in meta.items() if k not in _RESERVED}
        try:
            probe = encode(extra)
        except TypeError as exc:
            raise ValidationError(f"meta of {data_code}/{camera} is not JSON-encodable: {exc}") from None
        if len(probe) > MAX_META_BYTES - 1024:
            raise ValidationError(f"meta of {data_code}/{camera} is {len(probe)} bytes encoded, too large")

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
                _fsync_dir(self.root)
            self._reserved += need
            self._inflight[data_code] = self._inflight.get(data_code, 0) + 1

        token = secrets.token_hex(8)
        tmp_image = folder / f"{_TMP_PREFIX}{token}.img"
        tmp_meta = folder / f"{_TMP_PREFIX}{token}.json"
        try:
            _write_durably(tmp_image, view)
            _write_durably(tmp_meta, memoryview(meta_json))
            with self._lock:
                self._check_open()
                self._commit(
                    data_code, camera, tmp_image, tmp_meta, _Entry(seq, index, size, sha, file, meta_json)
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
                        self._remove_code_dir(data_code)
        logger.debug("spool %s: stored %s/%s (%d bytes, seq %d)", self.root, data_code, camera, size, seq)
        return self._capture(data_code, camera, _Entry(seq, index, size, sha, file, meta_json))

    def _commit(self, code: str, camera: str, tmp_image: Path, tmp_meta: Path, new: _Entry) -> None:
        # Lock held. Order: drop the old metadata (so it can never describe the new image), make
        # the image durable under its final name, then the metadata that vouches for it.
        folder = self.root / code
        meta_path = folder / f"{camera}{_META_SUFFIX}"
        old = self._index.get(code, {}).get(camera)
        try:
            if old is not None or meta_path.exists():
                meta_path.unlink()
                _fsync_dir(folder)
            os.replace(tmp_image, folder / new.file)
            _fsync_dir(folder)
            os.replace(tmp_meta, meta_path)
            _fsync_dir(folder)
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
        try:
            actual = os.fstat(fd).st_size
            if actual != entry.size:
                raise PlantImagerError(
                    f"image of {data_code}/{camera} is {actual} bytes on disk, expected {entry.size}"
                )
            if actual == 0:
                return memoryview(b"")
            mapped = mmap.mmap(fd, actual, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        with contextlib.suppress(AttributeError, OSError):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        return memoryview(mapped)

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
        """Delete captures the controller confirmed it holds: the only way anything is deleted.

        Parameters
        ----------
        data_code : str
            The data code to release.
        cameras : list of str, optional
            Release only these cameras' captures; ``None`` releases the whole data code.

        Returns
        -------
        int
            How many captures were deleted.

        Raises
        ------
        ValidationError
            If a name is not acceptable, or ``cameras`` is a single str.
        ImageUnavailable
            If nothing is stored under ``data_code`` or a listed camera has nothing there; then
            nothing is deleted.
        """
        validate_name(data_code, kind="data code")
        if isinstance(cameras, (str, bytes)):
            raise ValidationError("cameras must be a list of camera names, not a single string")
        wanted = None if cameras is None else list(dict.fromkeys(cameras))
        for camera in wanted or ():
            validate_name(camera, kind="camera name")
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
            folder = self.root / data_code
            for camera in wanted:
                entry = cams[camera]
                try:
                    # Metadata first: once it is gone the capture is gone, whatever happens next.
                    (folder / f"{camera}{_META_SUFFIX}").unlink(missing_ok=True)
                    (folder / entry.file).unlink(missing_ok=True)
                except BaseException:
                    self._reload_key(data_code, camera, entry.file)
                    raise
                del cams[camera]
                self._used -= entry.disk_bytes
            if wanted:
                _fsync_dir(folder)  # once for every capture released by this call
            if not cams:
                del self._index[data_code]
                if data_code not in self._inflight:
                    self._remove_code_dir(data_code, durable=False)
        logger.debug("spool %s: released %d captures of %s", self.root, len(wanted), data_code)
        return len(wanted)

    def usage_bytes(self) -> int:
        """Return the bytes held by stored captures (image and metadata files)."""
        with self._lock:
            return self._used

    def close(self) -> None:
        """Release the spool's lock; later calls raise. Stored captures stay on disk."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._lock_fd)
        logger.info("spool %s closed", self.root)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._used} bytes"
        return f"<Spool {str(self.root)!r} {state}>"
