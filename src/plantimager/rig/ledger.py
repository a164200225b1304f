"""The ledger: an append-only log, one JSON object per line, that a controller crash cannot corrupt.

The dataset writes a record before every step that must survive the controller: a capture number
taken and the cameras fired, what each node reported, each image written, each release. Replaying the
records gives the dataset's state after a restart. Each record is one ``write`` of a whole line,
fsynced when asked; a line cut short by a crash (the last one) is dropped when the ledger is opened.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plantimager.commons.errors import PlantImagerError

from .storage import disk_error, fsync_dir

__all__ = ["Ledger"]

logger = logging.getLogger(__name__)

#: Largest record accepted, in bytes (a record describes one capture or one image).
MAX_RECORD_BYTES = 1 << 20


class Ledger:
    """An append-only JSON-lines file.

    Parameters
    ----------
    path : pathlib.Path
        The file; created (and its directory entry made durable) if missing.
    readonly : bool
        Only read the records: nothing is created, repaired or appended.

    Attributes
    ----------
    records : list of dict
        The records found when the ledger was opened, in order.

    Raises
    ------
    PlantImagerError
        If the file cannot be read or created.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._fd: int | None = None
        try:
            raw = self.path.read_bytes() if self.path.exists() or readonly else b""
        except OSError as exc:
            raise PlantImagerError(f"cannot read the ledger {self.path}: {exc}") from exc
        self.records, good = self._parse(raw)
        if readonly:
            return
        try:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            if good < len(raw):
                logger.warning(
                    "ledger %s: dropping %d bytes of an unfinished last record", self.path, len(raw) - good
                )
                os.ftruncate(self._fd, good)
                os.fsync(self._fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            self.close()
            raise PlantImagerError(f"cannot open the ledger {self.path} for writing: {exc}") from exc

    def _parse(self, raw: bytes) -> tuple[list[dict[str, Any]], int]:
        """Return the records and the length of the well-formed prefix of ``raw``."""
        records: list[dict[str, Any]] = []
        offset = 0
        while offset < len(raw):
            end = raw.find(b"\n", offset)
            if end < 0:
                break  # an unfinished last line
            line = raw[offset:end]
            offset = end + 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                logger.error("ledger %s: skipping an unreadable record at byte %d", self.path, offset)
                continue
            records.append(record)
        return records, offset

    def append(self, record: dict[str, Any], *, durable: bool = True) -> None:
        """Append one record; with ``durable`` it is on disk when this returns.

        Raises
        ------
        PlantImagerError
            If the ledger is read-only or closed, the record is too large, or the write fails.
        """
        self.append_many([record], durable=durable)

    def append_many(self, records: Sequence[dict[str, Any]], *, durable: bool = True) -> None:
        """Append records in one write; with ``durable`` they are on disk (one fsync) when this returns.

        A crash may keep a prefix of them (whole lines only: the line cut short is dropped when the
        ledger is opened again).

        Raises
        ------
        PlantImagerError
            If the ledger is read-only or closed, a record is too large, or the write fails (then
            none of them is kept).
        """
        lines = []
        for record in records:
            line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
            if len(line) > MAX_RECORD_BYTES:
                raise PlantImagerError(f"ledger record of {len(line)} bytes is too large")
            lines.append(line)
        if not lines:
            return
        data = b"".join(lines)
        with self._lock:
            if self._fd is None:
                raise PlantImagerError(
                    f"the ledger {self.path} is {'read-only' if self.readonly else 'closed'}"
                )
            end = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                view, done = memoryview(data), 0
                while done < len(data):  # a short write goes on: the next one says why it stopped
                    done += os.write(self._fd, view[done:])
                if durable:
                    os.fsync(self._fd)
            except OSError as exc:
                try:  # never leave half a line for the next record to be glued to
                    os.ftruncate(self._fd, end)
                except OSError:
                    logger.exception("ledger %s: could not remove a partial record", self.path)
                raise disk_error("write to the ledger", self.path, exc) from exc

    def close(self) -> None:
        """Close the file; later appends raise. Safe to call more than once."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
