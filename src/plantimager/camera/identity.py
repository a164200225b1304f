"""A camera node's identity: a short id that stays the same across restarts and reboots.

The controller keys its bookkeeping (what each node still owes, the ``id{node}`` part of image file
names) by this id, so it must not change when the node process or the host restarts. PEPI's base
server drew a fresh ``uuid4`` per start; only its Raspberry Pi server used the CPU serial.

Sources, first usable one wins:

1. the Raspberry Pi CPU serial (``Serial`` line of ``/proc/cpuinfo``, when present and not all
   zeros), lower-cased and kept as printed, e.g. ``0000000079b7fd52`` (the same id PEPI reported, so
   file names of a rig moved over from PEPI keep their ``id`` part);
2. the systemd/D-Bus machine id (``/etc/machine-id``, then ``/var/lib/dbus/machine-id``): its first
   16 hex digits;
3. a random id created on first use and kept in ``<state_dir>/node-id`` (written atomically): its
   first 16 hex digits.

Every id returned is lower-case hex, so it is safe in file names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_CPUINFO", "DEFAULT_MACHINE_ID_FILES", "default_state_dir", "node_identity"]

logger = logging.getLogger(__name__)

DEFAULT_CPUINFO = Path("/proc/cpuinfo")
"""Where the Raspberry Pi kernel reports the CPU serial."""

DEFAULT_MACHINE_ID_FILES: tuple[Path, ...] = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
"""Machine-id files, in the order they are tried."""

_ID_LENGTH = 16
_SERIAL_RE = re.compile(r"[0-9a-f]{1,32}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_STATE_FILE = "node-id"


def default_state_dir() -> Path:
    """Return where the fallback id is kept when no ``state_dir`` is given.

    Returns
    -------
    pathlib.Path
        ``$XDG_STATE_HOME/plantimager`` if that variable is set, else
        ``~/.local/state/plantimager``.
    """
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "plantimager"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None


def _pi_serial(cpuinfo: Path) -> str | None:
    text = _read_text(cpuinfo)
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "serial":
            serial = value.strip().lower()
            if _SERIAL_RE.fullmatch(serial) and int(serial, 16) != 0:
                return serial
            logger.debug("ignoring unusable CPU serial %r in %s", serial, cpuinfo)
    return None


def _machine_id(paths: Sequence[Path]) -> str | None:
    for path in paths:
        value = (_read_text(path) or "").strip().lower()
        if _HEX32_RE.fullmatch(value) and int(value, 16) != 0:
            return value[:_ID_LENGTH]
        if value:
            logger.debug("ignoring unusable machine id %r in %s", value[:40], path)
    return None


def _persisted_id(state_dir: Path) -> str:
    path = state_dir / _STATE_FILE
    value = (_read_text(path) or "").strip().lower()
    if _HEX32_RE.fullmatch(value):
        return value[:_ID_LENGTH]
    exists = path.exists()
    if exists:
        logger.warning("replacing unusable node id file %s (content %r)", path, value[:40])
    state_dir.mkdir(parents=True, exist_ok=True)
    fresh = uuid.uuid4().hex
    tmp = state_dir / f".{_STATE_FILE}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{fresh}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if exists:
            os.replace(tmp, path)
        else:
            try:
                # link() fails if another process created the file meanwhile: its id wins.
                os.link(tmp, path)
            except FileExistsError:
                return _persisted_id(state_dir)
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.info("created node id %s in %s", fresh[:_ID_LENGTH], path)
    return fresh[:_ID_LENGTH]


def node_identity(
    state_dir: Path | None = None,
    *,
    cpuinfo: Path = DEFAULT_CPUINFO,
    machine_id_files: Sequence[Path] = DEFAULT_MACHINE_ID_FILES,
) -> str:
    """Return this node's stable id.

    Tries the Raspberry Pi CPU serial, then the machine id, then an id persisted in
    ``state_dir`` (created on first use); see the module documentation for details.

    Parameters
    ----------
    state_dir : pathlib.Path, optional
        Directory for the fallback id file ``node-id``; defaults to :func:`default_state_dir`.
        Only touched when neither the serial nor a machine id is usable.
    cpuinfo : pathlib.Path, optional
        The cpuinfo file to read (tests pass a temporary file).
    machine_id_files : sequence of pathlib.Path, optional
        Machine-id files to try, in order.

    Returns
    -------
    str
        1 to 32 lower-case hex digits (16 for the machine-id and persisted sources, the serial as
        printed for a Raspberry Pi).

    Raises
    ------
    OSError
        If the fallback id has to be created and ``state_dir`` is not writable.
    """
    serial = _pi_serial(cpuinfo)
    if serial is not None:
        return serial
    machine = _machine_id(machine_id_files)
    if machine is not None:
        return machine
    return _persisted_id(default_state_dir() if state_dir is None else Path(state_dir))
