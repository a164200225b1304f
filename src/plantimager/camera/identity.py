"""A camera node's identity: a short id that stays the same across restarts and reboots.

The controller keys its bookkeeping (what each node still owes, the ``id{node}`` part of image file
names) by this id, so it must not change when the node process or the host restarts. PEPI's base
server drew a fresh ``uuid4`` per start; only its Raspberry Pi server used the CPU serial.

The host's id, first usable source wins:

1. the Raspberry Pi CPU serial (``Serial`` line of ``/proc/cpuinfo``, when present and not all
   zeros), lower-cased and kept as printed, e.g. ``0000000079b7fd52`` (the same id PEPI reported, so
   file names of a rig moved over from PEPI keep their ``id`` part);
2. the systemd/D-Bus machine id (``/etc/machine-id``, then ``/var/lib/dbus/machine-id``): its first
   16 hex digits.

Several nodes may run on one host (a simulated rig, a test bench), each with its own state folder,
and a node registers under its id: the id must then differ between them. So:

* a Raspberry Pi whose node keeps its state in the default folder (one node per Pi, as deployed)
  is its CPU serial alone;
* any other node is the host id, ``-``, and 6 hex digits kept in its state folder, e.g.
  ``3d1219c7c4c5404a-5be0c2``: unique per state folder, and the same across restarts of the node;
* a host without an id gets a random id kept in its state folder: 16 hex digits.

The kept digits are those of a random id created on first use in ``<state_dir>/node-id`` (written
atomically). One state folder belongs to one node: two nodes sharing one get the same id. Every id
is lower-case hex digits and at most one ``-``, so it is safe in file names.
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
_SUFFIX_LENGTH = 6
_SERIAL_RE = re.compile(r"[0-9a-f]{1,32}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_STATE_FILE = "node-id"


def default_state_dir() -> Path:
    """Return the state folder of a node started without one.

    Returns
    -------
    pathlib.Path
        ``$STATE_DIRECTORY`` (set by systemd for a service with ``StateDirectory=``; its first
        folder) if that variable is set, else ``$XDG_STATE_HOME/plantimager`` if that one is, else
        ``~/.local/state/plantimager``.
    """
    service = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if service:
        return Path(service)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "plantimager"


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except (OSError, RuntimeError):
        return os.path.abspath(a.expanduser()) == os.path.abspath(b.expanduser())


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
    """Return this node's stable id (see the module documentation for the rule).

    Parameters
    ----------
    state_dir : pathlib.Path, optional
        The node's state folder, where ``node-id`` is kept; defaults to :func:`default_state_dir`.
        Not touched on a Raspberry Pi using the default folder.
    cpuinfo : pathlib.Path, optional
        The cpuinfo file to read (tests pass a temporary file).
    machine_id_files : sequence of pathlib.Path, optional
        Machine-id files to try, in order.

    Returns
    -------
    str
        The Pi serial as printed; or the host id, ``-`` and 6 hex digits; or 16 hex digits when the
        host has no id. If the state folder cannot be written but the host has an id, the host id
        alone (with a warning: other nodes on the host would take its registry entry).

    Raises
    ------
    OSError
        If the host has no id and ``state_dir`` is not writable.
    """
    default = default_state_dir()
    folder = default if state_dir is None else Path(state_dir)
    serial = _pi_serial(cpuinfo)
    if serial is not None and _same_folder(folder, default):
        return serial
    host = serial or _machine_id(machine_id_files)
    if host is None:
        return _persisted_id(folder)
    try:
        kept = _persisted_id(folder)
    except OSError as exc:
        logger.warning(
            "cannot keep a node id in %s (%s): using the host id %s alone, which other nodes on this "
            "host would share",
            folder,
            exc,
            host,
        )
        return host
    return f"{host}-{kept[:_SUFFIX_LENGTH]}"
