"""Durable file writes for the dataset: whole writes, fsyncs, atomic replacement, no overwriting."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

from plantimager.commons.errors import PlantImagerError, ValidationError

__all__ = [
    "TMP_PREFIX",
    "disk_error",
    "free_space",
    "fsync_dir",
    "link_new",
    "lock_exclusively",
    "publish_file",
    "remove_temporaries",
    "sha256_of",
    "sync_file",
    "write_atomically",
    "write_durably",
    "write_new",
]

logger = logging.getLogger(__name__)

#: Prefix of temporary files; names made by a file-name template never start with ``.``.
TMP_PREFIX = ".tmp-"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def free_space(path: Path) -> str:
    """The space left on the file system of ``path``, in words: ``"1.2 MiB free of 8.0 MiB"``.

    ``path`` need not exist: its nearest existing folder is looked at. Empty if that fails too.
    """
    where = Path(path)
    for folder in (where, *where.parents):
        try:
            stat = os.statvfs(folder)
        except OSError:
            continue
        return f"{_size(stat.f_bavail * stat.f_frsize)} free of {_size(stat.f_blocks * stat.f_frsize)}"
    return ""


def disk_error(action: str, path: Path, exc: OSError) -> PlantImagerError:
    """A clear error for a failed write: what was done, to which path, why, and the space left.

    Parameters
    ----------
    action : str
        What failed, as in "cannot {action} {path}" (``write``, ``write to the ledger``...).
    path : pathlib.Path
        What was being written.
    exc : OSError
        What the system said.
    """
    text = f"cannot {action} {path}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        space = free_space(path)
        text += f" ({space} on its file system)" if space else ""
    return PlantImagerError(text)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed files) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes | memoryview, *, durable: bool = True) -> None:
    """Create ``path`` (it must not exist) and write all of ``data`` to it.

    With ``durable``, the file is fsynced before returning. Without, the kernel is asked to start
    writing it to disk now (where it can be asked, on Linux), so that a later :func:`sync_file`
    finds little left to wait for while the caller goes on with other work meanwhile.
    """
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        done = 0
        while done < view.nbytes:
            done += os.write(fd, view[done : done + (1 << 22)])
        if durable:
            os.fsync(fd)
        else:
            _start_writeback(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes | memoryview) -> None:
    """Create ``path`` (it must not exist), write all of ``data`` and fsync it."""
    write_new(path, data, durable=True)


def sync_file(path: Path) -> None:
    """Flush a file's content to disk (the file was written earlier, by any descriptor)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_sync_file_range() -> Callable[[int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE: start writing the dirty pages, do not wait for them

    def start(fd: int) -> None:
        function(fd, 0, 0, write)  # best effort: a failure only means the fsync waits longer

    return start


def _start_writeback(fd: int) -> None:
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd)


_SYNC_FILE_RANGE = _load_sync_file_range()


def write_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` by a file holding ``data``: temporary file, fsync, rename, directory fsync.

    Without ``durable``, neither fsync: readers still see the old file or the new one, never a
    mix, but after a power cut the file may be an older version (for a file that can be made
    again, such as a dataset's manifest).
    """
    tmp = path.with_name(f"{TMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        write_new(tmp, data, durable=durable)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        fsync_dir(path.parent)


def sha256_of(path: Path) -> str:
    """SHA-256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def link_new(tmp: Path, final: Path, sha256: str) -> bool:
    """Give the written file ``tmp`` the name ``final`` without ever overwriting another file.

    Returns
    -------
    bool
        True if ``final`` was created, False if it already held the same bytes (``sha256``).

    Raises
    ------
    PlantImagerError
        If ``final`` exists with other bytes.
    """
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links (FAT): rename, having checked first
        if not os.path.lexists(final):
            os.replace(tmp, final)
            return True
    if sha256_of(final) != sha256:
        raise PlantImagerError(f"{final} already exists and holds other bytes; it was not overwritten")
    return False


def lock_exclusively(path: Path, timeout: float, what: str) -> int:
    """Take the exclusive lock (flock) of the lock file ``path`` and write this process's pid in it.

    Parameters
    ----------
    path : pathlib.Path
        The lock file; created if missing.
    timeout : float
        How long to wait for another process to let go, seconds.
    what : str
        What the lock guards, for error messages (e.g. ``"dataset /data/s1"``).

    Returns
    -------
    int
        The open file descriptor; closing it lets go of the lock.

    Raises
    ------
    ValidationError
        If the lock file cannot be created.
    PlantImagerError
        If another process still holds the lock after ``timeout``.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ValidationError(f"cannot create the lock file {path} of {what}: {exc.strerror}") from None
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise PlantImagerError(f"{what} is in use by another controller (pid {holder})") from None
            time.sleep(0.05)  # bounded retry while the other controller finishes
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def remove_temporaries(folder: Path, what: str) -> None:
    """Remove the temporary files (``TMP_PREFIX``) that interrupted writes left in ``folder``."""
    for entry in os.scandir(folder):
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            logger.info("%s: removing %s left by an interrupted write", what, entry.name)
            os.unlink(entry.path)


def publish_file(tmp: Path, final: Path, sha256: str) -> bool:
    """Make the written file ``tmp`` durable under the new name ``final``, and remove ``tmp``.

    Returns
    -------
    bool
        True if ``final`` was created; False if it already held the same bytes (``sha256``).

    Raises
    ------
    PlantImagerError
        If the file cannot be synced or linked, or ``final`` holds other bytes (nothing is overwritten).
    """
    try:
        sync_file(tmp)
        return link_new(tmp, final, sha256)
    except OSError as exc:
        raise disk_error("write", final, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
