"""What opening a spool does with one data-code folder: keep complete captures, remove the rest.

A capture is complete when its metadata file is valid and the image it vouches for has the size it says
(:func:`~plantimager.camera.spoolentry.load_entry`). Temporary files of interrupted writes, images no
metadata vouches for and invalid metadata files are removed, and the folder fsynced once if anything was.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from plantimager.commons.errors import PlantImagerError, ValidationError

from .names import validate_name
from .spoolentry import LOCK_NAME, META_SUFFIX, TMP_PREFIX, Entry, fsync_dir, load_entry
from .spoolrelease import remove_empty_folder

__all__ = ["checked_entry", "recover_folder", "recover_spool"]

logger = logging.getLogger(__name__)


def checked_entry(folder: Path, code: str, camera: str) -> Entry | None:
    """Return the index entry of ``camera`` in data-code ``folder``, or None (logged) if it is not valid."""
    try:
        return load_entry(folder, code, camera)
    except (OSError, PlantImagerError) as exc:
        logger.error("spool: dropping metadata %s: %s", folder / f"{camera}{META_SUFFIX}", exc)
        return None


def recover_folder(folder: Path, code: str) -> tuple[dict[str, Entry], bool]:
    """Clean up data-code ``folder`` after a crash and return its complete captures.

    Returns
    -------
    (dict, bool)
        The entries by camera name, and whether the folder holds unexpected sub-folders (left alone,
        so the folder must not be removed).
    """
    metas: list[str] = []
    others: list[str] = []
    changed = has_subdirs = False
    for entry in os.scandir(folder):
        if entry.name.startswith(TMP_PREFIX):
            logger.info("spool: removing interrupted write %s", entry.path)
            os.unlink(entry.path)
            changed = True
        elif entry.is_dir(follow_symlinks=False):
            logger.warning("spool: leaving unexpected directory %s alone", entry.path)
            has_subdirs = True
        elif entry.name.endswith(META_SUFFIX):
            metas.append(entry.name)
        else:
            others.append(entry.name)
    captures: dict[str, Entry] = {}
    for name in metas:
        loaded = checked_entry(folder, code, name[: -len(META_SUFFIX)])
        if loaded is None:
            os.unlink(folder / name)
            changed = True
        else:
            captures[name[: -len(META_SUFFIX)]] = loaded
    referenced = {e.file for e in captures.values()}
    for name in set(others) - referenced:
        logger.warning("spool: removing incomplete capture file %s", folder / name)
        os.unlink(folder / name)
        changed = True
    if changed:
        fsync_dir(folder)
    return captures, has_subdirs


def recover_spool(root: Path) -> dict[str, dict[str, Entry]]:
    """Clean up every data-code folder of the spool ``root`` after a crash; return the complete captures.

    Entries that are not data-code folders are left alone (logged); emptied folders are removed,
    with one fsync of ``root`` for all of them.

    Returns
    -------
    dict
        Data code -> camera name -> entry, for the data codes that hold a complete capture.
    """
    index: dict[str, dict[str, Entry]] = {}
    removed = False
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name == LOCK_NAME:
            continue
        try:
            validate_name(entry.name, kind="data code")
        except ValidationError:
            logger.warning("spool %s: ignoring %r, not a data code", root, entry.name)
            continue
        if not entry.is_dir(follow_symlinks=False):
            logger.warning("spool %s: ignoring %r, not a directory", root, entry.name)
            continue
        captures, has_subdirs = recover_folder(root / entry.name, entry.name)
        if captures:
            index[entry.name] = captures
        elif not has_subdirs:
            removed |= remove_empty_folder(root / entry.name)
    if removed:
        fsync_dir(root)
    return index
