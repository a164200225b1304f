"""A small file system of a fixed size for a dataset, and a way to fill it until writes fail.

:class:`Tmpfs` mounts a tmpfs (``mount -t tmpfs -o size=N tmpfs DIR``: root, or a private mount
namespace, see :func:`can_mount`) and unmounts it when done. :class:`Filler` takes every free byte
of it with one file, so that the next write of anyone on it fails with ENOSPC, and frees it again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["Filler", "Tmpfs", "can_mount", "free_bytes"]

_CHUNK = 1 << 20


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class Tmpfs:
    """A tmpfs of ``size_mb`` MiB mounted on ``where`` (created); a context manager.

    Raises
    ------
    PermissionError
        If the mount is refused (not root, no private mount namespace); the message has mount's.
    """

    def __init__(self, where: Path, size_mb: int) -> None:
        self.where = Path(where)
        self.size_mb = size_mb
        self.mounted = False

    def mount(self) -> Tmpfs:
        """Mount it (once)."""
        self.where.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs", str(self.where)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode:
            raise PermissionError(f"mount -t tmpfs on {self.where} refused: {result.stderr.strip()}")
        self.mounted = True
        return self

    def unmount(self) -> None:
        """Unmount it (lazily if something still holds a file open there). Safe to call twice."""
        if not self.mounted:
            return
        result = subprocess.run(["umount", str(self.where)], capture_output=True, timeout=30, check=False)
        if result.returncode:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True, timeout=30, check=True)
        self.mounted = False

    def __enter__(self) -> Tmpfs:
        return self.mount()

    def __exit__(self, *exc_info: object) -> None:
        self.unmount()


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (it runs as root, or as root of its user namespace)."""
    return os.geteuid() == 0


def unshare_prefix() -> list[str]:
    """A command prefix that runs a program as root of a private user and mount namespace.

    Used when this process may not mount: the program may then mount a tmpfs that only it and its
    children see. The network namespace is not touched (everything stays on this host's loopback).
    Empty if ``unshare`` is not available.
    """
    tool = shutil.which("unshare")
    return [tool, "--user", "--map-root-user", "--mount"] if tool else []


class Filler:
    """Fills the file system of ``folder`` with one file until a write fails with ENOSPC."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "filler"
        self.filled = 0

    def fill(self) -> int:
        """Write zeros until the file system is full; returns the bytes written."""
        block = bytes(_CHUNK)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = len(block)
            for _ in range(1 << 20):  # bounded: at most 1 TiB in 1 MiB writes
                try:
                    self.filled += os.write(fd, block[:size])
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    if size == 1:
                        break
                    size = max(1, size // 16)  # take the last bytes too
        finally:
            os.close(fd)
        return self.filled

    def free(self) -> None:
        """Remove the file: the space is free again."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.filled = 0
