"""Sessions: one dataset folder per session under a captures folder, and which one is current."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from plantimager.commons.errors import PlantImagerError, ValidationError

from .storage import write_atomically
from .template import DEFAULT_TEMPLATE, NameTemplate

__all__ = [
    "DEFAULT_CAPTURES",
    "SessionInfo",
    "current_session",
    "load_session",
    "prepare_folder",
    "session_folder",
    "session_for",
]

logger = logging.getLogger(__name__)

#: Where sessions go by default, relative to the working directory.
DEFAULT_CAPTURES = Path("captures")
_POINTER = ".session"


def prepare_folder(root: Path, what: str = "dataset folder") -> None:
    """Create ``root`` and its parents; a ValidationError naming the obstacle if that is impossible.

    Raises
    ------
    ValidationError
        If a parent is a file, or the folder cannot be created or written.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (root, *root.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            why = f"{blocker} is a file, not a folder"
        else:
            why = exc.strerror or str(exc)
        raise ValidationError(f"cannot use {root} as a {what}: {why}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ValidationError(f"cannot use {root} as a {what}: it is not writable")


def current_session(captures: Path) -> Path | None:
    """The session folder last started under ``captures``, or None."""
    try:
        name = (Path(captures) / _POINTER).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(captures) / name if name and "/" not in name and not name.startswith(".") else None


def session_folder(captures: Path, *, new: bool = False) -> Path:
    """Return the current session folder under ``captures``, starting one if needed or asked.

    A new session is named after the local time (``2024-06-11_15-30-00``) and remembered in
    ``<captures>/.session``, so separate commands keep using it until a new one is started.

    Raises
    ------
    ValidationError
        If ``captures`` cannot be created or written.
    """
    captures = Path(captures).expanduser()
    found = None if new else current_session(captures)
    if found is not None:
        return found
    prepare_folder(captures, "captures folder")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = stamp
    for _ in range(100):
        try:
            (captures / name).mkdir()  # reserves the name, also against another process
            break
        except FileExistsError:
            name = f"{stamp}_{secrets.token_hex(2)}"
    else:
        raise ValidationError(f"cannot find a free session name under {captures}")
    write_atomically(captures / _POINTER, f"{name}\n".encode())
    logger.info("new session %s", captures / name)
    return captures / name


@contextlib.contextmanager
def session_for(captures: Path, *, new: bool = False) -> Iterator[Path]:
    """:func:`session_folder` for a command that may still be refused: ``with session_for(...) as folder``.

    A session started here that the block leaves empty, because the block raised (bad input, a
    registry that does not answer...), is removed and the session before it is the current one
    again: a refused command leaves no empty session behind to mislead the next one.

    Raises
    ------
    ValidationError
        As :func:`session_folder`.
    """
    captures = Path(captures).expanduser()
    before = current_session(captures)
    folder = session_folder(captures, new=new)
    try:
        yield folder
    except BaseException:
        if folder != before:
            _abandon(captures, folder, before)
        raise


def _abandon(captures: Path, folder: Path, before: Path | None) -> None:
    """Remove ``folder`` if it is still empty, and make ``before`` the current session again."""
    try:
        folder.rmdir()  # only if empty: whatever was captured into it stays
    except OSError:
        return
    if current_session(captures) != folder:
        return  # another command has started a session since
    if before is None:
        (captures / _POINTER).unlink(missing_ok=True)
    else:
        write_atomically(captures / _POINTER, f"{before.name}\n".encode())
    logger.info("session %s removed: nothing was captured into it", folder)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a dataset's ``session.json`` says: its session id, creation time and file-name template."""

    session_id: str
    created: float
    template: NameTemplate


def load_session(path: Path, new_template: NameTemplate | None, *, readonly: bool) -> SessionInfo:
    """Read a dataset's ``session.json``, starting a new session if it is missing or damaged.

    Parameters
    ----------
    path : pathlib.Path
        The ``session.json`` file.
    new_template : NameTemplate, optional
        The template to use from now on (remembered in the file); by default the one the file names.
    readonly : bool
        Write nothing; a missing or damaged file is then an error.

    Raises
    ------
    PlantImagerError
        If the file cannot be read, or is missing or damaged in read-only mode.
    """
    try:
        session = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, ValueError) as exc:
        raise PlantImagerError(f"cannot read {path}: {exc}") from None
    if not isinstance(session, dict) or not isinstance(session.get("session_id"), str):
        if readonly:
            raise PlantImagerError(f"{path} is missing or damaged")
        now = time.time()
        stamp = datetime.fromtimestamp(now).strftime("%Y%m%d%H%M%S")
        session = {"session_id": f"{stamp}-{secrets.token_hex(3)}", "created": now}
    stored = session.get("template")
    template = new_template or NameTemplate(stored if isinstance(stored, str) else DEFAULT_TEMPLATE)
    if not readonly and session.get("template") != template.text:
        session["template"] = template.text
        write_atomically(path, (json.dumps(session, indent=1) + "\n").encode())
    return SessionInfo(session["session_id"], float(session.get("created", time.time())), template)
