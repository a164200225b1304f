"""The content of a dataset's ``manifest.json``: every capture, and every image received."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from plantimager.commons.errors import ValidationError

from .shot import CaptureState, ShotState

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "CaptureParts",
    "load_manifest",
    "manifest_bytes",
    "manifest_document",
]

MANIFEST_NAME = "manifest.json"
#: Format tag of ``manifest.json``.
MANIFEST_FORMAT = "plantimager-dataset/1"
_SETTING_KEYS = ("resolution", "encoding", "quality", "rotation", "controls")
_GEOMETRY_KEYS = ("camera_model", "intrinsics", "pose")


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def manifest_document(
    *,
    session: str,
    created: float,
    template: str,
    captures: Iterable[CaptureState],
    cache: dict[int, CaptureParts] | None = None,
) -> dict[str, Any]:
    """Build the manifest.

    Parameters
    ----------
    session, created, template
        The dataset's session id, creation time and file-name template.
    captures : iterable of CaptureState
        Every capture.
    cache : dict, optional
        Capture number -> its :class:`CaptureParts` from earlier calls: a capture whose version
        did not change is not built again (the cache is updated).

    Returns
    -------
    dict
        ``format``, ``session``, ``created``, ``updated``, ``template``; ``captures`` (number, data
        code, ``t0``, lead, skew, cameras, failures, lost and owed cameras, ``position``: where the
        object stood, e.g. a scan position, or None); ``images`` (per image:
        ``file``, ``camera``, ``camera_name``, ``node``, ``node_id``, ``camera_index``,
        ``capture_no``, ``data_code``, ``requested_t0``, ``captured_at``, ``captured_ns``,
        ``offset_ms``, ``settings``, ``size``, ``sha256``, ``xxh3_128``: None for images stored by
        nodes older than that checksum; ``clock_offset_ms``, the node's clock offset from NTP time
        when it captured (None when unknown); ``position``, that of its capture; ``camera_model``
        (``make``, ``model``), ``intrinsics`` and ``pose`` as the node stored them, or None when
        unknown); ``cameras`` (rig-wide camera name -> the ``camera_model``, ``intrinsics`` and
        ``pose`` of its latest image that has them). docs/photogrammetry.md describes the
        geometry fields.
    """
    parts = _parts_of(captures, cache)
    return {
        **_head(session, created, template),
        "captures": [part.entry for part in parts],
        "cameras": _latest_geometry(parts),
        "images": [image for part in parts for image in part.images],
    }


def manifest_bytes(
    *,
    session: str,
    created: float,
    template: str,
    captures: Iterable[CaptureState],
    cache: dict[int, CaptureParts] | None = None,
) -> bytes:
    """The manifest as :func:`manifest_document` builds it, encoded as JSON: one line per entry.

    Each capture's entries are encoded once per change of the capture (they are kept in
    ``cache``), so rewriting the manifest of a long session costs joining bytes, not encoding
    every image again: a 36-position scan of 64 cameras rewrites 2,304 image entries each time.
    Each capture and each image takes one line, which keeps the file readable and greppable.
    """
    parts = _parts_of(captures, cache)
    head = msgspec.json.encode(_head(session, created, template))
    camera_lines = [
        msgspec.json.encode(name) + b": " + msgspec.json.encode(geometry)
        for name, geometry in _latest_geometry(parts).items()
    ]
    pieces = [head[:-1]]
    _lines(pieces, b',\n "captures": [', [part.entry_json for part in parts], b"]")
    _lines(pieces, b',\n "cameras": {', camera_lines, b"}")
    _lines(pieces, b',\n "images": [', [line for part in parts for line in part.image_json], b"]")
    pieces.append(b"\n}\n")
    return b"".join(pieces)  # one copy of what may be megabytes


@dataclass(frozen=True)
class CaptureParts:
    """The manifest entries of one capture at one version, as objects and encoded.

    ``geometry`` maps each camera whose image has intrinsics or a pose to that geometry;
    ``unknown_geometry`` the others (a camera is listed in ``cameras`` even when nothing is known).
    """

    version: int
    entry: dict[str, Any]
    images: list[dict[str, Any]]
    entry_json: bytes
    image_json: list[bytes]
    geometry: dict[str, dict[str, Any]]
    unknown_geometry: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, capture: CaptureState) -> CaptureParts:
        entry, images = _capture_entries(capture)
        geometry: dict[str, dict[str, Any]] = {}
        unknown: dict[str, dict[str, Any]] = {}
        for image in images:  # one per camera
            known = image["intrinsics"] is not None or image["pose"] is not None
            (geometry if known else unknown)[image["camera"]] = {key: image[key] for key in _GEOMETRY_KEYS}
        return cls(
            capture.version,
            entry,
            images,
            msgspec.json.encode(entry),
            [msgspec.json.encode(image) for image in images],
            geometry,
            unknown,
        )


def _parts_of(captures: Iterable[CaptureState], cache: dict[int, CaptureParts] | None) -> list[CaptureParts]:
    """The parts of every capture, in capture order; those whose version did not change from ``cache``."""
    parts = []
    for capture in sorted(captures, key=lambda c: c.capture_no):
        known = cache.get(capture.capture_no) if cache is not None else None
        if known is None or known.version != capture.version:
            known = CaptureParts.of(capture)
            if cache is not None:
                cache[capture.capture_no] = known
        parts.append(known)
    return parts


def _head(session: str, created: float, template: str) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "session": session,
        "created": _iso(created),
        "updated": _iso(time.time()),
        "template": template,
    }


def _lines(pieces: list[bytes], opening: bytes, items: list[bytes], closing: bytes) -> None:
    """Add ``items`` to ``pieces`` between ``opening`` and ``closing``, one per line, indented."""
    pieces.append(opening)
    for i, item in enumerate(items):
        pieces += (b"\n  " if i == 0 else b",\n  ", item)
    pieces.append(b"\n " + closing if items else closing)


def _capture_entries(capture: CaptureState) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest entry of a capture, and those of its images received."""
    wanted = [s for s in capture.shots.values() if s.wanted]
    entry = {
        "capture_no": capture.capture_no,
        "data_code": capture.data_code,
        "t0": capture.t0,
        "t0_utc": _iso(capture.t0),
        "lead_ms": capture.lead_ms,
        "skew_ms": capture.skew_ms,
        "cameras": [s.camera for s in wanted],
        "failures": {s.camera: s.reason for s in wanted if s.status == "failed"},
        "lost": {s.camera: s.reason for s in wanted if s.status == "lost"},
        "owed": [s.camera for s in wanted if s.status in ("sent", "stored")],
        "position": capture.position,
    }
    return entry, [_image_entry(capture, s) for s in wanted if s.status in ("received", "done")]


def _latest_geometry(parts: list[CaptureParts]) -> dict[str, dict[str, Any]]:
    """Rig-wide camera name -> the geometry of its latest image (by capture) that has some.

    A camera none of whose images has intrinsics or a pose is listed with its first image's.
    """
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for camera, geometry in part.unknown_geometry.items():
            out.setdefault(camera, geometry)
        out.update(part.geometry)
    return dict(sorted(out.items()))


def _image_entry(capture: CaptureState, shot: ShotState) -> dict[str, Any]:
    meta = shot.meta
    t0 = meta.get("requested_at", capture.t0)
    captured = meta.get("captured_at")
    return {
        "file": shot.file,
        "camera": shot.camera,
        "camera_name": shot.camera_name,
        "node": shot.node,
        "node_id": shot.node_id,
        "camera_index": shot.camera_index,
        "capture_no": shot.capture_no,
        "data_code": shot.data_code,
        "requested_t0": t0,
        "captured_at": captured,
        "captured_ns": meta.get("captured_ns"),
        "captured_utc": _iso(captured),
        "offset_ms": None if t0 is None or captured is None else round((captured - t0) * 1e3, 4),
        "settings": {key: meta.get(key) for key in _SETTING_KEYS},
        "size": meta.get("size"),
        "sha256": meta.get("sha256"),
        "xxh3_128": meta.get("xxh3_128"),
        "clock_offset_ms": meta.get("clock_offset_ms"),
        "position": capture.position,
        **{key: meta.get(key) for key in _GEOMETRY_KEYS},
    }


def load_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the manifest of the dataset in ``folder``, for tools that only read a dataset.

    Raises
    ------
    ValidationError
        If ``folder`` is not a folder, holds no ``manifest.json``, or the manifest is not one of a
        plantimager dataset.
    """
    root = Path(folder)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ValidationError(f"{root} is not a dataset: no such folder")
    if not path.is_file():
        raise ValidationError(f"{root} is not a dataset: it has no {MANIFEST_NAME}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ValidationError(
            f"{path} is not a plantimager manifest (format {found!r}, expected {MANIFEST_FORMAT!r})"
        )
    if not isinstance(document.get("images"), list):
        raise ValidationError(f"{path} has no list of images")
    return document
