"""What a spool keeps on disk and in memory for one capture, and how it reads a capture back.

The layout, the durability rules and the reasons behind them are described in :mod:`.spool`; this
module holds the pieces that describe one capture (:class:`Capture`, :class:`Entry`), check its files
(:func:`load_entry`) and write them durably.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import mmap
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xxhash

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.rpc.wire import decode_object, encode

from .names import validate_name

__all__ = [
    "EXT_RE",
    "LOCK_NAME",
    "MAX_META_BYTES",
    "META_SUFFIX",
    "RESERVED",
    "SHA_RE",
    "TMP_PREFIX",
    "Capture",
    "Entry",
    "SpoolFull",
    "as_bytes_view",
    "check_camera_index",
    "commit_files",
    "fsync_dir",
    "load_entry",
    "map_image",
    "new_record",
    "write_durably",
]

MAX_META_BYTES = 64 * 1024
"""Largest accepted metadata document (encoded JSON), so the index stays small."""

META_SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"
EXT_RE = re.compile(r"[A-Za-z0-9]{1,16}")
SHA_RE = re.compile(r"[0-9a-f]{64}")
# Keys the spool fills in itself; the caller may only repeat them with the same value.
RESERVED = ("data_code", "camera", "file", "ext", "size", "sha256", "xxh3_128", "seq")


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
class Entry:
    """What the spool's index keeps of one capture: small values only, never image bytes."""

    seq: int
    camera_index: int | None
    size: int
    sha256: str
    file: str
    meta_json: bytes

    @property
    def disk_bytes(self) -> int:
        """Bytes the capture takes on disk: image and metadata."""
        return self.size + len(self.meta_json)

    def order(self) -> tuple[bool, int, int]:
        """Sort key: by camera index (captures without one last), then by store sequence."""
        return (self.camera_index is None, self.camera_index or 0, self.seq)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, view: memoryview) -> None:
    """Create ``path`` (must not exist), write all of ``view`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        done, total = 0, view.nbytes
        while done < total:
            done += os.write(fd, view[done : done + (1 << 22)])
        os.fsync(fd)
    finally:
        os.close(fd)


def check_camera_index(value: Any, where: str) -> int | None:
    """Return ``value`` if it is None or an int >= 0; otherwise raise ValidationError naming ``where``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{where}: camera_index must be an int >= 0, got {value!r}")
    return value


def as_bytes_view(data: Any) -> memoryview:
    """Return a flat byte view of the image buffer ``data``, or raise ValidationError saying why not."""
    try:
        view = memoryview(data)
    except TypeError:
        raise ValidationError(
            f"image data must be bytes or a bytes-like object, not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValidationError("image data must be a C-contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def load_entry(folder: Path, code: str, camera: str) -> Entry:
    """Read and check the metadata file of ``camera`` in data-code ``folder``, and the image's size.

    Raises
    ------
    OSError
        If a file cannot be read.
    PlantImagerError
        If the metadata is malformed, does not match its place, or the image is not the size it says.
    """
    path = folder / f"{camera}{META_SUFFIX}"
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
    if not isinstance(ext, str) or not EXT_RE.fullmatch(ext) or file != f"{camera}.{ext}":
        raise ValidationError(f"bad ext/file {ext!r}/{file!r}")
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise ValidationError(f"bad sha256 {sha!r}")
    for key, value in (("size", size), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"bad {key} {value!r}")
    index = check_camera_index(meta.get("camera_index"), "metadata")
    if os.stat(folder / file, follow_symlinks=False).st_size != size:
        raise ValidationError(f"image {file} is not {size} bytes long")
    return Entry(seq=seq, camera_index=index, size=size, sha256=sha, file=file, meta_json=raw)


def new_record(
    data_code: str, camera: str, data: Any, meta: Mapping[str, Any], ext: str
) -> tuple[memoryview, int | None, dict[str, Any], dict[str, Any]]:
    """Check a capture offered to :meth:`Spool.put` and work out what its metadata will hold.

    Returns
    -------
    (memoryview, int or None, dict, dict)
        The image bytes, the camera index, the keys the spool fills in (names, size and checksums),
        and the caller's other keys.

    Raises
    ------
    ValidationError
        If a name, ``ext``, ``data`` or ``meta`` is not acceptable (see :meth:`Spool.put`).
    """
    validate_name(data_code, kind="data code")
    validate_name(camera, kind="camera name")
    if not isinstance(ext, str) or not EXT_RE.fullmatch(ext) or ext.lower() == "json":
        raise ValidationError(f"invalid extension {ext!r}: must be 1-16 letters or digits, not 'json'")
    view = as_bytes_view(data)
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise ValidationError("meta must be a mapping with str keys")
    index = check_camera_index(meta.get("camera_index"), f"meta of {data_code}/{camera}")
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
    for key in RESERVED:
        if key in meta and (key == "seq" or meta[key] != fixed[key]):
            shown = "is assigned by the spool" if key == "seq" else f"is {fixed[key]!r}"
            raise ValidationError(f"meta[{key!r}] = {meta[key]!r} conflicts: {key} {shown}")
    extra = {k: v for k, v in meta.items() if k not in RESERVED}
    try:
        probe = encode(extra)
    except TypeError as exc:
        raise ValidationError(f"meta of {data_code}/{camera} is not JSON-encodable: {exc}") from None
    if len(probe) > MAX_META_BYTES - 1024:
        raise ValidationError(f"meta of {data_code}/{camera} is {len(probe)} bytes encoded, too large")
    return view, index, fixed, extra


def map_image(fd: int, size: int, what: str) -> memoryview:
    """A read-only view of the image file open as ``fd``, over a memory map; closes ``fd``.

    Raises
    ------
    PlantImagerError
        If the file does not hold ``size`` bytes (it was changed behind the spool's back).
    """
    try:
        actual = os.fstat(fd).st_size
        if actual != size:
            raise PlantImagerError(f"image of {what} is {actual} bytes on disk, expected {size}")
        if actual == 0:
            return memoryview(b"")
        mapped = mmap.mmap(fd, actual, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    with contextlib.suppress(AttributeError, OSError):
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    return memoryview(mapped)


def commit_files(
    folder: Path, camera: str, tmp_image: Path, tmp_meta: Path, file: str, *, replacing: bool
) -> None:
    """Give a capture's written temporary files their names in data-code ``folder``, durably.

    Order: the old metadata goes first (so it can never describe the new image), then the image is
    made durable under its final name ``file``, then the metadata that vouches for it.
    """
    meta_path = folder / f"{camera}{META_SUFFIX}"
    if replacing or meta_path.exists():
        meta_path.unlink()
        fsync_dir(folder)
    os.replace(tmp_image, folder / file)
    fsync_dir(folder)
    os.replace(tmp_meta, meta_path)
    fsync_dir(folder)
