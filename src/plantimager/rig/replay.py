"""What a dataset's ledger says, replayed: its captures, their shots, and the file names they take.

The ledger (:mod:`.ledger`) is a list of records, each appended before the step it describes takes
effect; :class:`LedgerState` is what those records add up to. The dataset replays every record when it
is opened and applies each new one as it appends it, so the state in memory is always the ledger's.

============  ================================================================================
record kind   what it changes
============  ================================================================================
capture       a new capture number, its data code and the shot of every camera asked to fire
captured      which cameras stored their image (with what the node said), which failed
received      an image is durably in the dataset, under its final name
released      its node was told it may delete the image
lost          the image cannot be had any more (the reason says why)
============  ================================================================================
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .shot import OWED, CaptureState, ShotState

__all__ = ["LedgerState"]

logger = logging.getLogger(__name__)


class LedgerState:
    """The captures and taken file names that a sequence of ledger records describes.

    Parameters
    ----------
    where : object
        What to name in log messages (the dataset folder).

    Attributes
    ----------
    captures : dict of int to CaptureState
        Every capture, by number.
    files : set of str
        The file names taken by the shots that are wanted.
    """

    def __init__(self, where: object) -> None:
        self.where = where
        self.captures: dict[int, CaptureState] = {}
        self.files: set[str] = set()

    def apply(self, record: Mapping[str, Any]) -> None:
        """Change the state as ``record`` says; a malformed record is logged and skipped."""
        try:
            kind = record["kind"]
            if kind == "capture":
                self.apply_capture(record)
                return
            capture = self.captures[int(record["capture_no"])]
            capture.version += 1
            if kind == "captured":
                capture.t0, capture.lead_ms = record.get("t0"), record.get("lead_ms")
                capture.skew_ms = record.get("skew_ms")
                for camera, meta in record.get("results", {}).items():
                    shot = capture.shots[camera]
                    shot.status, shot.meta = "stored", dict(meta)
                    self.rename(shot, record.get("files", {}).get(camera, shot.file))
                for camera, reason in record.get("failures", {}).items():
                    capture.shots[camera].status, capture.shots[camera].reason = "failed", str(reason)
                for camera, reason in record.get("unknown", {}).items():
                    capture.shots[camera].reason = str(reason)
                return
            shot = capture.shots[record["camera"]]
            if kind == "received":
                shot.status = "received"
                shot.meta.update(record.get("meta", {}))
                self.rename(shot, record["file"])
            elif kind == "released":
                shot.status = "done"
            elif kind == "lost":
                shot.status, shot.reason = "lost", str(record.get("reason", ""))
            else:
                logger.warning("dataset %s: ignoring a ledger record of kind %r", self.where, kind)
        except (KeyError, TypeError, ValueError) as exc:
            logger.error(
                "dataset %s: ignoring a ledger record (%s: %s): %.200s",
                self.where,
                type(exc).__name__,
                exc,
                record,
            )

    def apply_capture(self, record: Mapping[str, Any]) -> None:
        """Add the capture, and its shots, that a ``capture`` record announces."""
        capture = CaptureState(
            int(record["capture_no"]),
            str(record["data_code"]),
            float(record["created"]),
            str(record["template"]),
            position=record.get("position"),
        )
        for item in record["shots"]:
            shot = ShotState(
                capture.capture_no,
                capture.data_code,
                template=capture.template,
                sent_at=capture.created,
                **item,
            )
            capture.shots[shot.camera] = shot
            if shot.wanted:
                self.files.add(shot.file)
        self.captures[capture.capture_no] = capture

    def rename(self, shot: ShotState, file: str) -> None:
        """Give ``shot`` the file name ``file``, keeping the set of taken names up to date."""
        if file != shot.file and shot.wanted:
            self.files.discard(shot.file)
            self.files.add(file)
        shot.file = file

    def counts(self) -> dict[str, Any]:
        """Images received, images owed per camera, lost and failed, over the wanted shots."""
        shots = [s for c in self.captures.values() for s in c.shots.values() if s.wanted]
        owed: dict[str, int] = {}
        for shot in shots:
            if shot.status in ("sent", "stored"):
                owed[shot.camera] = owed.get(shot.camera, 0) + 1
        return {
            "images": sum(s.status in ("received", "done") for s in shots),
            "owed": owed,
            "lost": sum(s.status == "lost" for s in shots),
            "failed": sum(s.status == "failed" for s in shots),
        }

    def owed(self) -> list[ShotState]:
        """Copies of the shots that still need work (fetch, or release), oldest capture first."""
        return [
            dataclasses.replace(shot, meta=dict(shot.meta))
            for no in sorted(self.captures)
            for shot in self.captures[no].shots.values()
            if shot.status in OWED
        ]

    def released_held(self, node: str, held: Mapping[str, Iterable[int]]) -> list[ShotState]:
        """Copies of the shots of ``node`` released already that ``held`` (data code -> indices) lists.

        A node may hold again what it was told to delete if it lost power right after: its
        deletions become durable a moment later (see :mod:`plantimager.camera.spoolrelease`).
        """
        out = []
        for capture in self.captures.values():
            indices = held.get(capture.data_code)
            if indices is None:
                continue
            wanted = set(indices)
            out.extend(
                dataclasses.replace(shot, meta=dict(shot.meta))
                for shot in capture.shots.values()
                if shot.node == node and shot.status == "done" and shot.camera_index in wanted
            )
        return out
