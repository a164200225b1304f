"""Scan plans kept in a dataset, and what the dataset holds of each position.

A scan is a list of turntable angles; its plan is kept in the dataset's state folder
(``.rig/scans.json``), so a scan interrupted in any way is finished by running it again. Which
positions are taken is not kept there: it is read from the dataset's own captures, each of which
records its position (scan number, index, angle) in the same durable ledger record that creates
it. So no position can be captured without the dataset knowing it, whenever the controller stops.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.number import is_finite

from .dataset import STATE_DIR, Dataset
from .storage import write_atomically

__all__ = [
    "MAX_POSITIONS",
    "PLANS_NAME",
    "PositionState",
    "ScanPlan",
    "load_plans",
    "plan_angles",
    "position_states",
    "save_plans",
]

#: Most positions a scan may have (a tenth of a degree apart).
MAX_POSITIONS = 3600
#: File of the scan plans, in the dataset's state folder.
PLANS_NAME = "scans.json"
_FORMAT = "plantimager-scans/1"


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """One scan of a dataset: its number, its angles (degrees) and the turntable's name."""

    scan: int
    angles: tuple[float, ...]
    turntable: str | None
    created: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return {
            "scan": self.scan,
            "angles": list(self.angles),
            "turntable": self.turntable,
            "created": self.created,
        }

    def same_as(self, angles: Sequence[float], turntable: str | None) -> bool:
        """Whether this plan has these angles and this turntable."""
        return (
            self.turntable == turntable
            and len(angles) == len(self.angles)
            and all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(angles, self.angles, strict=True))
        )


@dataclass(slots=True)
class PositionState:
    """What the dataset holds of one position of a scan.

    ``taken`` lists the captures of the position that stored at least one image (normally one);
    ``doubtful`` those whose outcome the controller never learnt (it stopped in between);
    ``failed`` those where every camera failed or its image was lost.
    """

    index: int
    taken: list[int]
    doubtful: list[int]
    failed: list[int]


def plan_angles(positions: Any, start: float = 0.0) -> tuple[float, ...]:
    """The angles of a scan: ``positions`` evenly spaced from ``start``, or the angles given.

    Parameters
    ----------
    positions : int or sequence of float
        How many positions, evenly spaced around the full turn, or the angles themselves.
    start : float
        The first angle, in degrees (with a count).

    Raises
    ------
    ValidationError
        If the count is not an int in ``[1, MAX_POSITIONS]``, an angle is not finite, or two
        angles are the same.
    """
    if not is_finite(start):
        raise ValidationError(f"start must be a finite angle in degrees, got {start!r}")
    if isinstance(positions, (bool, str, bytes)):
        raise ValidationError(f"positions must be a count or a list of angles, got {positions!r}")
    if isinstance(positions, int):
        if not 1 <= positions <= MAX_POSITIONS:
            raise ValidationError(f"positions must be between 1 and {MAX_POSITIONS}, got {positions}")
        return tuple(round((start + 360.0 * i / positions) % 360.0, 9) % 360.0 for i in range(positions))
    try:
        angles = list(positions)
    except TypeError:
        raise ValidationError(f"positions must be a count or a list of angles, got {positions!r}") from None
    if not 1 <= len(angles) <= MAX_POSITIONS:
        raise ValidationError(f"a scan needs between 1 and {MAX_POSITIONS} angles, got {len(angles)}")
    out = []
    for angle in angles:
        if not is_finite(angle):
            raise ValidationError(f"scan angles must be finite numbers of degrees, got {angle!r}")
        out.append(float(angle) % 360.0)
    if len({round(a, 6) for a in out}) != len(out):
        raise ValidationError(f"scan angles must differ from each other (modulo 360), got {angles!r}")
    return tuple(out)


def _path(dataset: Dataset) -> Path:
    return dataset.root / STATE_DIR / PLANS_NAME


def load_plans(dataset: Dataset) -> list[ScanPlan]:
    """The scans planned in ``dataset``, oldest first.

    Raises
    ------
    PlantImagerError
        If the plan file cannot be read or is not one.
    """
    path = _path(dataset)
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {_FORMAT!r}")
        return [
            ScanPlan(
                int(p["scan"]), tuple(float(a) for a in p["angles"]), p.get("turntable"), float(p["created"])
            )
            for p in document["scans"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlantImagerError(f"the scan plans of {dataset.root} ({path}) cannot be read: {exc}") from None


def save_plans(dataset: Dataset, plans: Sequence[ScanPlan]) -> None:
    """Write the plans durably (replacing the file at once)."""
    document = {"format": _FORMAT, "updated": time.time(), "scans": [p.as_dict() for p in plans]}
    write_atomically(_path(dataset), json.dumps(document, indent=1).encode() + b"\n")


def position_states(dataset: Dataset, plan: ScanPlan) -> list[PositionState]:
    """What the dataset holds of each position of ``plan``, in index order."""
    states = [PositionState(i, [], [], []) for i in range(len(plan.angles))]
    manifest = dataset.manifest()
    received = {image["capture_no"] for image in manifest["images"]}
    status = {(shot.capture_no, shot.camera): shot.status for shot in dataset.owed()}
    for capture in manifest["captures"]:
        position = capture.get("position") or {}
        index = position.get("index")
        if position.get("scan") != plan.scan or not isinstance(index, int) or not 0 <= index < len(states):
            continue
        number = capture["capture_no"]
        shots = [status.get((number, camera)) for camera in capture["cameras"]]
        if number in received or "stored" in shots or "received" in shots:
            states[index].taken.append(number)
        elif "sent" in shots:
            states[index].doubtful.append(number)
        else:
            states[index].failed.append(number)
    return states
