"""Deleting released captures from the spool: many at once, made durable together a little later.

A release names captures by data code and camera. :func:`release_plan` checks such a request before
anything is touched; :class:`Deletion` then removes each capture (metadata first: once it is gone
the capture is gone, whatever happens next; then the image). A data-code folder left empty is
removed, and the spool folder fsynced once for every folder removed: once a folder's removal is on
disk, nothing that was in it can come back. A folder still holding other captures is fsynced itself.

:class:`LazySync` does those fsyncs after the release has answered: within :data:`DELETION_SYNC_S`,
one for every release meanwhile, and not at all for the spool folder when a capture fsyncs it first
(a capture does, when it makes its data-code folder). A release thus costs its node no fsync while
the controller waits, and at most one per second. Nothing is lost that way, since a release only
comes once the controller holds the images durably; a power cut within that second may only bring
a released capture back, and the controller releases again what a node holds that it already has.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plantimager.commons.errors import ValidationError

from .names import validate_name
from .spoolentry import META_SUFFIX, fsync_dir

__all__ = ["DELETION_SYNC_S", "MAX_RELEASE_CAPTURES", "Deletion", "LazySync", "Released", "release_plan"]

logger = logging.getLogger(__name__)

#: Most data codes one release may name.
MAX_RELEASE_CAPTURES = 10_000
#: Longest time a deletion waits for the fsync that makes it durable, seconds.
DELETION_SYNC_S = 1.0


@dataclass(frozen=True, slots=True)
class Released:
    """What a release of many captures did.

    Attributes
    ----------
    released : int
        Captures deleted.
    missing : dict of str to (list of str or None)
        Data code -> the cameras asked for that had nothing stored under it (None: the whole data
        code was asked for and nothing is stored under it). Nothing to delete there: released
        before, or never stored.
    """

    released: int
    missing: dict[str, list[str] | None] = field(default_factory=dict)


def release_plan(captures: object) -> dict[str, list[str] | None]:
    """Check a release request: data code -> camera names (None: every camera of the code).

    Returns
    -------
    dict of str to (list of str or None)
        The same, with each list's repeated names dropped.

    Raises
    ------
    ValidationError
        If ``captures`` is not a mapping, names too many data codes, or holds a name that is not
        acceptable (see :func:`~plantimager.camera.names.validate_name`) or a camera list that is
        not a list of names.
    """
    if not isinstance(captures, Mapping):
        raise ValidationError(
            f"captures must map data codes to lists of cameras, got {type(captures).__name__}"
        )
    if len(captures) > MAX_RELEASE_CAPTURES:
        raise ValidationError(
            f"a release may name at most {MAX_RELEASE_CAPTURES} data codes, got {len(captures)}"
        )
    plan: dict[str, list[str] | None] = {}
    for code, cameras in captures.items():
        validate_name(code, kind="data code")
        if cameras is None:
            plan[code] = None
            continue
        if isinstance(cameras, (str, bytes)) or not isinstance(cameras, Iterable):
            what = "a single string" if isinstance(cameras, (str, bytes)) else type(cameras).__name__
            raise ValidationError(
                f"the cameras of data code {code!r} must be a list of camera names, not {what}"
            )
        names = list(dict.fromkeys(cameras))
        for name in names:
            validate_name(name, kind="camera name")
        plan[code] = names
    return plan


class Deletion:
    """The deletions of one release (or clean-up), to be made durable by :meth:`sync`.

    Parameters
    ----------
    root : pathlib.Path
        The spool folder.

    Attributes
    ----------
    count : int
        Captures deleted.
    folders : set of str
        Data-code folders changed and kept, whose entries need an fsync.
    removed : bool
        Whether a data-code folder was removed (the spool folder needs an fsync).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.folders: set[str] = set()
        self.removed = False

    def remove(self, code: str, camera: str, file: str) -> None:
        """Delete one capture's metadata, then its image (not durable until :meth:`sync`)."""
        folder = self.root / code
        self.folders.add(code)
        (folder / f"{camera}{META_SUFFIX}").unlink(missing_ok=True)
        (folder / file).unlink(missing_ok=True)
        self.count += 1

    def remove_folder(self, code: str) -> None:
        """Remove the emptied folder of ``code`` (kept, and fsynced itself, if it is not empty)."""
        try:
            os.rmdir(self.root / code)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            logger.debug("spool %s: keeping directory %s: %s", self.root, code, exc)
            return
        self.folders.discard(code)
        self.removed = True

    def sync(self) -> None:
        """Make every deletion so far durable: each folder kept once, the spool folder once."""
        for code in sorted(self.folders):
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(self.root / code)
        if self.removed:
            fsync_dir(self.root)
        self.folders.clear()
        self.removed = False


class LazySync:
    """Makes the deletions of a spool durable soon after, together (see the module documentation).

    Parameters
    ----------
    root : pathlib.Path
        The spool folder.
    delay : float
        Longest wait of a deletion for its fsync, seconds.
    """

    def __init__(self, root: Path, delay: float = DELETION_SYNC_S) -> None:
        self.delay = delay
        self._pending = Deletion(root)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, deletion: Deletion) -> None:
        """Take over the fsyncs ``deletion`` needs; they happen within :attr:`delay` seconds."""
        if not deletion.folders and not deletion.removed:
            return
        with self._lock:
            self._pending.folders |= deletion.folders
            self._pending.removed |= deletion.removed
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="spool-deletions", daemon=True)
                self._thread.start()
        self._wake.set()

    def root_synced(self) -> None:
        """The spool folder was just fsynced, which made every folder removal so far durable.

        Call it with the spool's lock held, the removals and the fsync both having been made under it.
        """
        with self._lock:
            self._pending.removed = False

    def sync(self) -> None:
        """Make every deletion handed over so far durable, now."""
        with self._lock:
            todo, self._pending = self._pending, Deletion(self._pending.root)
        todo.sync()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self._stop.wait(self.delay)  # deletions that come meanwhile share the fsync
            try:
                self.sync()
            except OSError:
                logger.exception("spool %s: making deletions durable failed", self._pending.root)

    def close(self) -> None:
        """Stop the thread and make what is left durable. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sync()
