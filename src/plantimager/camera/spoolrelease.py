"""Deleting released captures from the spool: many at once, the slow part after the answer.

A release names captures by data code and camera. :func:`release_plan` checks such a request before
anything is touched; :class:`Deletion` then takes each capture out of the spool by renaming its
files to temporary names (metadata first: once it is gone the capture is gone, whatever happens
next; then the image). Renaming costs next to nothing, where deleting a file frees its blocks (and
on a file system mounted with ``discard`` trims them), which takes milliseconds.

:class:`Janitor` does the rest once the release has answered: it deletes the renamed files and
removes the data-code folders left empty at once, and makes all that durable within
:data:`DELETION_SYNC_S`, with one fsync for every release meanwhile (of the spool folder, once a
folder's removal is on disk nothing that was in it can come back; a folder still holding captures
is fsynced itself), and none for the spool folder when a capture fsyncs it first (a capture does,
when it makes its data-code folder). Nothing is lost that way, since a release only comes once the
controller holds the images durably. A node that dies before the files are deleted leaves
temporary files, which opening the spool removes; a power cut before the fsync may only bring a
released capture back, and the controller releases again what a node holds that it already has.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plantimager.commons.errors import ValidationError

from .names import validate_name
from .spoolentry import META_SUFFIX, TMP_PREFIX, fsync_dir

__all__ = [
    "DELETION_SYNC_S",
    "MAX_RELEASE_CAPTURES",
    "Deletion",
    "Janitor",
    "Released",
    "release_plan",
    "remove_empty_folder",
]

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


def remove_empty_folder(folder: Path) -> bool:
    """Remove ``folder`` if it is empty; True if it was removed (or was already gone)."""
    try:
        os.rmdir(folder)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return True
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        logger.debug("spool: keeping directory %s: %s", folder, exc)
        return False
    return True


class Deletion:
    """The captures one release (or clean-up) takes out of a spool; :class:`Janitor` finishes it.

    Parameters
    ----------
    root : pathlib.Path
        The spool folder.

    Attributes
    ----------
    count : int
        Captures taken out.
    trash : list of pathlib.Path
        Their files, renamed, to delete.
    folders : set of str
        Data-code folders changed, whose entries need an fsync.
    emptied : set of str
        Data-code folders to remove once empty.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.trash: list[Path] = []
        self.folders: set[str] = set()
        self.emptied: set[str] = set()

    def remove(self, code: str, camera: str, file: str) -> None:
        """Take one capture out: its metadata, then its image, renamed to temporary names."""
        folder = self.root / code
        token = secrets.token_hex(6)
        self.folders.add(code)
        for name, suffix in ((f"{camera}{META_SUFFIX}", META_SUFFIX), (file, ".img")):
            moved = folder / f"{TMP_PREFIX}gone-{token}{suffix}"
            try:
                os.rename(folder / name, moved)
            except FileNotFoundError:
                continue
            self.trash.append(moved)
        self.count += 1

    def remove_folder(self, code: str) -> None:
        """Have the folder of ``code`` removed once it is empty (see :class:`Janitor`)."""
        self.emptied.add(code)


class Janitor:
    """Finishes the deletions of a spool after the releases answered (see the module documentation).

    Parameters
    ----------
    root : pathlib.Path
        The spool folder.
    delay : float
        Longest wait of a deletion for its fsync, seconds.
    remove_folder : callable
        ``remove_folder(code)`` removes the data-code folder if no capture is there or being
        written (the spool checks, under its lock); True if it did.
    """

    def __init__(self, root: Path, delay: float, remove_folder: Callable[[str], bool]) -> None:
        self.root = root
        self.delay = delay
        self._remove_folder = remove_folder
        self._lock = threading.Lock()
        self._working = threading.Lock()  # one clean or sync at a time: a caller waits for the other
        self._pending = Deletion(root)
        self._unsynced: set[str] = set()
        self._root_unsynced = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, deletion: Deletion) -> None:
        """Take over the rest of ``deletion``: its files deleted soon, all durable within the delay."""
        if not (deletion.trash or deletion.folders or deletion.emptied):
            return
        with self._lock:
            self._pending.trash.extend(deletion.trash)
            self._pending.folders |= deletion.folders
            self._pending.emptied |= deletion.emptied
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="spool-deletions", daemon=True)
                self._thread.start()
        self._wake.set()

    def root_synced(self) -> None:
        """The spool folder was just fsynced, which made every folder removal so far durable.

        Call it with the spool's lock held, the folders having been removed under it too.
        """
        with self._lock:
            self._root_unsynced = False

    def clean(self) -> None:
        """Delete the files taken out so far and remove the folders left empty, now."""
        with self._working:
            self._clean()

    def _clean(self) -> None:
        with self._lock:
            todo, self._pending = self._pending, Deletion(self.root)
        for path in todo.trash:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        kept = set(todo.folders)
        for code in sorted(todo.emptied):
            if self._remove_folder(code):  # the spool folder needs an fsync instead
                kept.discard(code)
                with self._lock:
                    self._root_unsynced = True
            else:
                kept.add(code)
        with self._lock:
            self._unsynced |= kept

    def sync(self) -> None:
        """Make every deletion finished so far durable: each folder kept once, the spool folder once."""
        with self._working:
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            folders, self._unsynced = self._unsynced, set()
            root, self._root_unsynced = self._root_unsynced, False
        for code in sorted(folders):
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(self.root / code)
        if root:
            fsync_dir(self.root)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                self.clean()
                self._stop.wait(self.delay)  # deletions that come meanwhile share the fsync
                self.clean()
                self.sync()
            except OSError:
                logger.exception("spool %s: finishing deletions failed", self.root)

    def close(self) -> None:
        """Stop the thread and finish what is left, durably. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.clean()
        self.sync()
