"""The dataset's bookkeeping of captures and of each camera's image in them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OWED",
    "CaptureState",
    "ShotPlan",
    "ShotState",
    "StagedImage",
    "WrittenImage",
    "extension_for",
    "shots_by_node",
]

#: Shot states that still need work: fetch (``sent``, ``stored``) or release (``received``).
OWED = ("sent", "stored", "received")


def extension_for(encoding: Any) -> str:
    """File extension of an image encoding (``jpeg`` -> ``jpeg``, ``png`` -> ``png``)."""
    text = str(encoding or "jpeg").lower()
    return text if text.isalnum() and len(text) <= 8 else "bin"


@dataclass(frozen=True, slots=True)
class ShotPlan:
    """A camera to fire in a capture, as the rig plans it.

    ``wanted`` is False for cameras that fire only because they share a node with a wanted one;
    their images are released without being downloaded.
    """

    camera: str
    node: str
    node_id: str
    camera_index: int
    camera_name: str
    ext: str
    wanted: bool = True


@dataclass(slots=True)
class ShotState:
    """What the dataset knows of one camera's image of one capture.

    ``status`` is ``sent`` (result unknown), ``stored`` (the node stored it), ``failed`` (the node
    reported a failure: nothing owed), ``received`` (written to the dataset, release pending),
    ``done`` (released) or ``lost`` (the node no longer has it).
    """

    capture_no: int
    data_code: str
    camera: str
    node: str
    node_id: str
    camera_index: int
    camera_name: str
    file: str
    wanted: bool
    template: str
    status: str = "sent"
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    sent_at: float = 0.0


@dataclass(slots=True)
class CaptureState:
    """One capture of the dataset and its shots (camera -> ShotState)."""

    capture_no: int
    data_code: str
    created: float
    template: str
    t0: float | None = None
    lead_ms: float | None = None
    skew_ms: float | None = None
    shots: dict[str, ShotState] = field(default_factory=dict)
    #: Where the object stood (a scan position: ``scan``, ``index``, ``angle``...), None outside scans.
    position: dict[str, Any] | None = None
    #: Bumped by every ledger record about the capture (its manifest entries are kept until then).
    version: int = 0


def shots_by_node(shots: Iterable[ShotState]) -> dict[str, list[ShotState]]:
    """Group shots by node name, keeping their order."""
    out: dict[str, list[ShotState]] = {}
    for shot in shots:
        out.setdefault(shot.node, []).append(shot)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenImage:
    """An image whose file is durably written into the dataset but not yet recorded in the ledger.

    Attributes
    ----------
    capture_no : int
        Its capture.
    camera : str
        Its camera (``node/camera``).
    file : str
        The file name in the dataset.
    meta : dict
        What the node sent with it, with ``size`` and ``sha256`` of the bytes written.
    """

    capture_no: int
    camera: str
    file: str
    meta: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StagedImage:
    """An image whose bytes are in a temporary file of the dataset: not yet durable, not yet named.

    Attributes
    ----------
    image : WrittenImage
        What it will be once finished (:meth:`~plantimager.rig.dataset.Dataset.finish_image`).
    tmp : pathlib.Path
        The temporary file.
    """

    image: WrittenImage
    tmp: Path
