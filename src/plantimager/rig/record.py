"""What the rig reports: cameras, nodes, events, capture records, download progress and reports.

Every class here is a frozen dataclass of plain values, so the CLI prints them and the web app
sends them as JSON (:meth:`as_dict`) without knowing anything about the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CameraInfo",
    "CaptureRecord",
    "DownloadProgress",
    "DownloadReport",
    "NodeInfo",
    "RigEvent",
    "Shot",
    "camera_key",
    "split_camera_key",
]


def camera_key(node: str, camera: str) -> str:
    """The rig-wide name of a camera: ``<node>/<camera>``, e.g. ``0000000079b7fd52/cam0``."""
    return f"{node}/{camera}"


def split_camera_key(key: str) -> tuple[str, str]:
    """Return ``(node, camera)`` from a rig-wide camera name; ``camera`` is empty for a bare node name."""
    node, sep, camera = key.rpartition("/")
    return (node, camera) if sep else (key, "")


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict (paths as text, tuples as lists)."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True, slots=True)
class CameraInfo(_AsDict):
    """One camera of the rig, as its node last described it.

    Attributes
    ----------
    key : str
        Rig-wide name, ``<node>/<camera>``.
    node : str
        Name of its node in the registry.
    node_id : str
        The node's ``identify()``.
    index : int
        Index of the camera on its node.
    name : str
        Name of the camera on its node (``cam0``...).
    address : str
        The node's RPC address.
    resolution : tuple of int
        Still resolution ``(width, height)``.
    encoding : str
        ``"jpeg"`` or ``"png"``.
    quality : int or None
        JPEG quality.
    rotation : int
        Clockwise rotation, degrees.
    controls : dict
        Camera controls by name.
    stream_url : str
        MJPEG preview URL, empty if the node runs no previews.
    backend : str
        Camera backend on the node.
    """

    key: str
    node: str
    node_id: str
    index: int
    name: str
    address: str
    resolution: tuple[int, int]
    encoding: str
    quality: int | None
    rotation: int
    controls: dict[str, Any]
    stream_url: str
    backend: str


@dataclass(frozen=True, slots=True)
class NodeInfo(_AsDict):
    """One camera node seen in the registry.

    Attributes
    ----------
    name : str
        Name in the registry.
    address : str
        RPC address.
    state : str
        ``connecting``, ``ready``, ``unreachable`` (it stopped answering) or ``failed`` (it cannot
        be used, see ``error``).
    node_id : str
        Its ``identify()``, empty until known.
    cameras : tuple of str
        Rig-wide names of its cameras.
    rtt_ms : float or None
        Worst recent round trip, milliseconds.
    error : str
        Why it is unreachable or failed.
    clock_offset_ms : float or None
        Its clock's offset from NTP time as it last reported it, ms (positive: ahead); None when
        unknown.
    clock_flag : str
        Why its clock is a problem (off by more than the skew budget), else empty.
    """

    name: str
    address: str
    state: str
    node_id: str = ""
    cameras: tuple[str, ...] = ()
    rtt_ms: float | None = None
    error: str = ""
    clock_offset_ms: float | None = None
    clock_flag: str = ""


@dataclass(frozen=True, slots=True)
class RigEvent(_AsDict):
    """A change of the live rig.

    Attributes
    ----------
    kind : str
        ``node_added``, ``node_removed``, ``node_failed``, ``node_unreachable``, ``node_ready``,
        ``node_clock`` (its clock went beyond the skew budget, or back within it; ``detail`` says
        which), ``camera_added``, ``camera_removed``, ``camera_changed`` (a node's cameras' settings
        changed, by this controller or another), ``registry_connected`` or ``registry_lost``.
    node : str
        The node concerned (empty for registry events).
    camera : str
        The rig-wide camera name for camera events, else empty.
    detail : str
        An explanation (the error of a failed node...).
    at : float
        ``time.monotonic()`` when the rig noticed the change.
    """

    kind: str
    node: str = ""
    camera: str = ""
    detail: str = ""
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Shot(_AsDict):
    """One image of a capture, as the node reported it.

    Attributes
    ----------
    camera : str
        Rig-wide camera name.
    node, node_id : str
        Registry name and ``identify()`` of the node.
    camera_index : int
        Index of the camera on its node.
    file : str
        File name the image gets in the dataset.
    captured_at : float
        Wall-clock capture time, seconds since the epoch.
    offset_ms : float
        ``captured_at - t0``, milliseconds.
    size : int
        Bytes of the stored image.
    sha256 : str
        SHA-256 of the stored image (hex).
    settings : dict
        ``resolution``, ``encoding``, ``quality``, ``rotation``, ``controls`` at capture time.
    clock_offset_ms : float or None
        The node's clock offset from NTP time when it captured, ms (its ``captured_at`` is on that
        clock); None when unknown.
    """

    camera: str
    node: str
    node_id: str
    camera_index: int
    file: str
    captured_at: float
    offset_ms: float
    size: int
    sha256: str
    settings: dict[str, Any] = field(default_factory=dict)
    clock_offset_ms: float | None = None


@dataclass(frozen=True, slots=True)
class CaptureRecord(_AsDict):
    """The outcome of one capture.

    Attributes
    ----------
    capture_no : int
        Capture number in the dataset.
    data_code : str
        Name of the capture on the nodes.
    dataset : pathlib.Path
        The dataset folder.
    t0 : float
        The instant every node was asked to fire, seconds since the epoch.
    lead_ms : float
        How far ahead of sending ``t0`` was chosen.
    shots : tuple of Shot
        Every camera that captured, in camera order.
    failures : dict of str to str
        Camera -> reason, for those that did not.
    skew_ms : float or None
        Latest minus earliest capture time, milliseconds (None with fewer than one shot), each as
        its node's clock tells it.
    clock_offsets_ms : dict of str to (float or None)
        Node -> its clock's offset from NTP time when it captured, ms (None: unknown). The skew
        is only as true as these are small.
    clock_flags : dict of str to str
        Node -> why its clock spoils this capture (off by more than the skew budget).
    """

    capture_no: int
    data_code: str
    dataset: Path
    t0: float
    lead_ms: float
    shots: tuple[Shot, ...]
    failures: dict[str, str]
    skew_ms: float | None
    clock_offsets_ms: dict[str, float | None] = field(default_factory=dict)
    clock_flags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DownloadProgress(_AsDict):
    """Reported after each image of a download is settled (written, or failed).

    Attributes
    ----------
    camera : str
        Rig-wide camera name.
    capture_no : int
        Capture it belongs to.
    file : str
        File name in the dataset.
    size : int
        Bytes written (0 on failure).
    done, total : int
        Images settled so far, and to settle in this download.
    ok : bool
        Whether the image is now safely in the dataset.
    reason : str
        Why not, when ``ok`` is false.
    """

    camera: str
    capture_no: int
    file: str
    size: int
    done: int
    total: int
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DownloadReport(_AsDict):
    """The outcome of a download.

    Attributes
    ----------
    dataset : pathlib.Path
        The dataset folder.
    files : tuple of str
        Files written by this download.
    released : int
        Images the nodes were told they may delete.
    bytes : int
        Bytes written.
    seconds : float
        Duration.
    failures : dict of str to str
        Camera -> reason, for the cameras that still owe images.
    owed : int
        Images still owed after this download (will be fetched by the next one).
    """

    dataset: Path
    files: tuple[str, ...]
    released: int
    bytes: int
    seconds: float
    failures: dict[str, str]
    owed: int
