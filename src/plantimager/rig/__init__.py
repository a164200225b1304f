"""The rig controller: every camera of a registry, fired together, downloaded into a dataset.

Start with :class:`Rig`; ``plantimager rig`` and ``plantimager demo`` are built on it. See
``docs/rig.md``.
"""

from __future__ import annotations

from plantimager.commons.errors import RigError

from .dataset import Dataset
from .node import CallLimits
from .record import CameraInfo, CaptureRecord, DownloadProgress, DownloadReport, NodeInfo, RigEvent, Shot
from .rig import DEFAULT_REGISTRY_URL, Rig
from .template import DEFAULT_TEMPLATE, NameTemplate
from .timing import LeadPolicy

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "DEFAULT_TEMPLATE",
    "CallLimits",
    "CameraInfo",
    "CaptureRecord",
    "Dataset",
    "DownloadProgress",
    "DownloadReport",
    "LeadPolicy",
    "NameTemplate",
    "NodeInfo",
    "Rig",
    "RigError",
    "RigEvent",
    "Shot",
]
