"""Deleting released captures from the spool: many at once, with one fsync for all of them.

A release names captures by data code and camera. :func:`release_plan` checks such a request before
anything is touched; :class:`Deletion` then removes each capture (metadata first: once it is gone
the capture is gone, whatever happens next; then the image) and makes all those removals durable
together. A data-code folder left empty is removed, and the spool folder fsynced once for every
folder removed: once a folder's removal is on disk, nothing that was in it can come back. A folder
still holding other captures is fsynced itself. A release of whole captures thus costs one fsync
however many captures and data codes it names.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plantimager.commons.errors import ValidationError

from .names import validate_name
from .spoolentry import META_SUFFIX, fsync_dir

__all__ = ["MAX_RELEASE_CAPTURES", "Deletion", "Released", "release_plan"]

logger = logging.getLogger(__name__)

#: Most data codes one release may name.
MAX_RELEASE_CAPTURES = 10_000


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
    """The deletions of one release, made durable together by :meth:`sync`.

    Parameters
    ----------
    root : pathlib.Path
        The spool folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self._touched: dict[str, None] = {}
        self._removed_folder = False

    def remove(self, code: str, camera: str, file: str) -> None:
        """Delete one capture's metadata, then its image (not durable until :meth:`sync`)."""
        folder = self.root / code
        self._touched[code] = None
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
        self._touched.pop(code, None)
        self._removed_folder = True

    def sync(self) -> None:
        """Make every deletion so far durable: each folder kept once, the spool folder once."""
        for code in self._touched:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(self.root / code)
        if self._removed_folder:
            fsync_dir(self.root)
        self._touched.clear()
        self._removed_folder = False
