"""Durable file writes for the dataset: whole writes, fsyncs, atomic replacement, no overwriting."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from pathlib import Path

from plantimager.commons.errors import PlantImagerError

__all__ = ["TMP_PREFIX", "fsync_dir", "link_new", "sha256_of", "write_atomically", "write_durably"]

logger = logging.getLogger(__name__)

#: Prefix of temporary files; names made by a file-name template never start with ``.``.
TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed files) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes | memoryview) -> None:
    """Create ``path`` (it must not exist), write all of ``data`` and fsync it."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        done = 0
        while done < view.nbytes:
            done += os.write(fd, view[done : done + (1 << 22)])
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``: temporary file, fsync, rename, directory fsync."""
    tmp = path.with_name(f"{TMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        write_durably(tmp, data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
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
