"""Rewriting ``manifest.json`` after every change, without making other threads wait for the disk.

The manifest is derived from the ledger: it is rebuilt from it when the dataset is opened, so its
rewrites replace it atomically (readers see the old one or the new one) but are not fsynced, and
a rewrite that fails (a full disk, say) is logged and tried again at the next change, flush or
opening; it never fails the step whose record is already in the ledger. Only
:meth:`ManifestWriter.flush`, asked for explicitly, reports it, and fsyncs the manifest when asked
to (a dataset does when it is closed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from plantimager.commons.errors import PlantImagerError

from .storage import disk_error, fsync_dir, sync_file, write_atomically

__all__ = ["ManifestWriter"]

logger = logging.getLogger(__name__)


class ManifestWriter:
    """Keeps one manifest file up to date with a document that changes often.

    Parameters
    ----------
    path : pathlib.Path
        The manifest file.
    render : callable
        Returns the current document, encoded; called with ``lock`` held.
    lock : threading.RLock
        The lock that guards what the document is built from.
    """

    def __init__(self, path: Path, render: Callable[[], bytes], lock: threading.RLock) -> None:
        self.path = path
        self._render = render
        self._lock = lock
        self._write_lock = threading.Lock()
        self._generation = self._written = 0
        self._written_at = float("-inf")
        self._synced = True

    def changed(self, max_age: float = 0.0) -> None:
        """Rewrite the manifest after a change, without making other threads wait for it.

        Each rewrite holds every change made so far, so changes made while one is in progress
        share the next one. With ``max_age``, the rewrite is skipped if the manifest was written
        less than that many seconds ago (:meth:`flush` brings it up to date). The ledger, not the
        manifest, is what a restart relies on: the manifest is rebuilt from it when the dataset is
        opened. A rewrite that fails is logged (and tried again at most every ``max_age``).
        """
        with self._lock:
            self._generation += 1
            if max_age > 0 and time.monotonic() - self._written_at < max_age:
                return
        while self._write_lock.acquire(blocking=False):
            try:
                self._write_pending()
            except PlantImagerError as exc:
                logger.warning("%s; it will be written again at the next change", exc)
                return
            finally:
                self._write_lock.release()
            with self._lock:
                if self._written == self._generation:
                    return

    def _write_pending(self) -> None:
        # Write lock held.
        while True:
            with self._lock:
                if self._written == self._generation:
                    return
                generation, data = self._generation, self._render()
            try:
                write_atomically(
                    self.path,
                    data,
                    durable=False,  # made again from the ledger after a crash; fsynced by flush(durable)
                )
            except OSError as exc:
                self._written_at = time.monotonic()
                raise disk_error("write", self.path, exc) from exc
            self._synced = False
            self._written = generation
            self._written_at = time.monotonic()

    def flush(self, *, strict: bool = True, durable: bool = False) -> str:
        """Return once ``manifest.json`` includes every change made so far; on disk with ``durable``.

        With ``strict`` False, a failure is logged and returned instead of raised: for the end of
        a capture or a download, whose records are already safe in the ledger.

        Returns
        -------
        str
            Why the manifest could not be written ("" when it was).

        Raises
        ------
        PlantImagerError
            With ``strict``, if it cannot be written (naming the path, and the space left when the
            disk is full).
        """
        with self._write_lock:
            try:
                self._write_pending()
                if durable and not self._synced:
                    try:
                        sync_file(self.path)
                        fsync_dir(self.path.parent)
                    except OSError as exc:
                        raise disk_error("write", self.path, exc) from exc
                    self._synced = True
            except PlantImagerError as exc:
                if strict:
                    raise
                logger.warning("%s; it will be written again at the next change", exc)
                return str(exc)
        return ""
