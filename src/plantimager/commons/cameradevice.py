"""Camera interfaces: the upstream ``Camera`` device and the PEPI-style ``CameraNode``.

``Camera`` is the interface of the upstream plantimager project, unchanged on the wire: an
upstream controller drives any of our cameras. ``CameraNode`` adds what a rig controller needs from
the process that runs on each Raspberry Pi (PEPI's ``CameraServer`` operations, synchronised capture
into an on-disk spool, retrieval and release, per-camera settings). A node server implements both;
its ``Camera`` members act on the node's first camera.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, Literal

from .errors import ImageUnavailable, ValidationError
from .RPC import RPCProperty, RPCSignal

__all__ = ["Camera", "CameraMode", "CameraNode", "Encoding"]

#: Image encodings a camera can deliver.
Encoding = Literal["jpeg", "png"]


class CameraMode(enum.StrEnum):
    """What the camera is doing: taking stills or streaming video. Travels as ``"STILL"``/``"VIDEO"``."""

    VIDEO = "VIDEO"
    STILL = "STILL"

    @classmethod
    def parse(cls, value: object) -> CameraMode:
        """The mode ``value`` names (a ``CameraMode`` or its text).

        Raises
        ------
        ValidationError
            If ``value`` names no mode.
        """
        try:
            return cls(value)
        except ValueError:
            raise ValidationError(f"mode must be 'STILL' or 'VIDEO', got {value!r}") from None


class Camera(ABC):
    """A camera reachable over RPC (upstream plantimager interface).

    Signals
    -------
    modeChanged(str), videoUrlChanged(str), rotationChanged(int), resolutionChanged(tuple[int, int]),
    encodingChanged(str), configChanged(dict)
        Emitted by the server when the matching property changes.
    """

    modeChanged = RPCSignal(str)
    videoUrlChanged = RPCSignal(str)
    rotationChanged = RPCSignal(int)
    resolutionChanged = RPCSignal(tuple[int, int])
    encodingChanged = RPCSignal(str)
    configChanged = RPCSignal(dict)

    @abstractmethod
    def get_image(self, lores: bool = False) -> tuple[memoryview, dict]:
        """Capture one image now and return it encoded, with its metadata.

        Parameters
        ----------
        lores : bool
            Return a small preview-sized image instead of a full-resolution one.

        Returns
        -------
        tuple of (memoryview, dict)
            The encoded image and its metadata: at least ``format`` (``"jpeg"`` or ``"png"``),
            ``rotation`` (degrees) and ``size`` (array shape ``[height, width, channels]``).
        """

    @RPCProperty(notify=modeChanged)
    @abstractmethod
    def mode(self) -> CameraMode:
        """``STILL`` or ``VIDEO``; in ``VIDEO`` mode :attr:`video_url` gives the live stream."""

    @mode.setter
    @abstractmethod
    def mode(self, value: CameraMode) -> None: ...

    @RPCProperty(notify=videoUrlChanged)
    @abstractmethod
    def video_url(self) -> str:
        """URL of the live stream in ``VIDEO`` mode, empty otherwise (read-only)."""

    @RPCProperty(notify=rotationChanged)
    @abstractmethod
    def rotation(self) -> int:
        """Rotation applied to images, in degrees (0, 90, 180 or 270)."""

    @rotation.setter
    @abstractmethod
    def rotation(self, value: int) -> None: ...

    @RPCProperty(notify=resolutionChanged)
    @abstractmethod
    def resolution(self) -> tuple[int, int]:
        """Still resolution as ``(width, height)``."""

    @resolution.setter
    @abstractmethod
    def resolution(self, value: tuple[int, int]) -> None: ...

    @RPCProperty(notify=encodingChanged)
    @abstractmethod
    def encoding(self) -> Encoding:
        """Encoding of delivered images: ``"jpeg"`` or ``"png"``."""

    @encoding.setter
    @abstractmethod
    def encoding(self, value: Encoding) -> None: ...

    @RPCProperty(notify=configChanged)
    @abstractmethod
    def config(self) -> dict:
        """Camera controls by their Picamera2 names (``ExposureTime``, ``AnalogueGain``...).

        Setting it merges the given controls into the current ones and emits ``configChanged``
        with the whole configuration.
        """

    @config.setter
    @abstractmethod
    def config(self, value: dict) -> None: ...


class CameraNode(ABC):
    """The operations of a camera node: one process serving one or more cameras.

    The first group is PEPI's ``CameraServer``; captures are kept on disk under a *data code* until
    the controller confirms it has them with :meth:`release`. Per-camera operations take the camera's
    index in :meth:`cameras` order (``camera=0`` by default).

    Signals
    -------
    captureStored(dict)
        Emitted when a capture is safely stored: ``{"data_code", "cameras", "captured_ns"}`` where
        ``cameras`` lists the camera indices stored and ``captured_ns`` their capture times (ns).
    """

    captureStored = RPCSignal(dict)

    # -- PEPI CameraServer -------------------------------------------------------------------------
    @abstractmethod
    def ping(self) -> bool:
        """Return ``True``: the node is up and answering."""

    @abstractmethod
    def identify(self) -> str:
        """The node's identifier, stable across restarts (Pi CPU serial, else machine id)."""

    @abstractmethod
    def stream_urls(self) -> list[str]:
        """One live-preview URL (MJPEG over HTTP) per camera, in camera order; empty without previews."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop the node (and power the host off only if the node was started to allow it)."""

    @abstractmethod
    def start_capture(self, data_code: str, at: float | None = None) -> dict:
        """Capture a still on every camera and store it under ``data_code``.

        Parameters
        ----------
        data_code : str
            Name of the capture, ``[A-Za-z0-9._-]``, 1 to 128 characters. An existing capture of
            the same code is replaced.
        at : float, optional
            Wall-clock time (seconds since the epoch) at which to fire, a few ms ahead, so that
            many nodes fire together; None fires at once.

        Returns
        -------
        dict
            ``{"data_code", "requested_at", "cameras": [{"camera", "camera_index", "captured_at",
            "captured_ns", "size", "sha256", ...}]}`` with each camera's actual capture time;
            cameras that failed are listed under ``failures`` (camera name -> reason).
        """

    @abstractmethod
    def retrieve_stills_jpg(self, data_code: str) -> tuple[memoryview, dict]:
        """The captures of ``data_code`` as JPEG files, one per camera in camera order.

        Returns
        -------
        tuple of (memoryview, dict)
            The files concatenated, and ``{"cameras": [...], "sizes": [...], "format": "jpeg"}``
            telling where each one ends (:func:`split_stills` splits them).

        Raises
        ------
        ImageUnavailable
            If nothing is stored under ``data_code``.
        """

    @abstractmethod
    def retrieve_stills_png(self, data_code: str) -> tuple[memoryview, dict]:
        """As :meth:`retrieve_stills_jpg`, as PNG files."""

    @abstractmethod
    def enumerate_methods(self) -> dict[str, list[str]]:
        """Remote methods of the node: name -> argument names."""

    # -- per camera (PEPI Camera) ------------------------------------------------------------------
    @abstractmethod
    def still(self, camera: int = 0) -> tuple[memoryview, dict]:
        """Capture now and return the raw RGB pixels (``uint8``, shape in ``info["shape"]``)."""

    @abstractmethod
    def low_res_still(self, camera: int = 0) -> tuple[memoryview, dict]:
        """A 640x480 preview capture as raw RGB pixels (``info["shape"] == [480, 640, 3]``)."""

    @abstractmethod
    def get_max_resolution(self, camera: int = 0) -> list[int]:
        """The largest resolution of the camera, ``[width, height]``."""

    @abstractmethod
    def get_current_resolution(self, camera: int = 0) -> list[int]:
        """The current still resolution, ``[width, height]``."""

    @abstractmethod
    def set_resolution(self, x: int, y: int, camera: int = 0) -> list[int]:
        """Set the still resolution; returns the one applied (clamped to the camera's range)."""

    # -- rig operations ----------------------------------------------------------------------------
    @abstractmethod
    def cameras(self) -> list[dict]:
        """The node's cameras in order: ``[{"name", "index", "resolution", "encoding", "stream_url"}]``."""

    @abstractmethod
    def retrieve_still(self, data_code: str, camera: int = 0) -> tuple[memoryview, dict]:
        """One stored capture, as stored (JPEG or PNG), with its metadata (size, sha256, times).

        Raises
        ------
        ImageUnavailable
            If that camera has nothing stored under ``data_code``.
        """

    @abstractmethod
    def release(self, data_code: str, cameras: list[int] | None = None) -> int:
        """Delete stored captures the controller has safely received; returns how many."""

    def release_many(self, captures: dict[str, list[int] | None]) -> dict[str, Any]:
        """Delete many stored captures in one call; what is not stored is reported, not refused.

        This default calls :meth:`release` for each data code (then camera by camera where one of
        them is not stored); a node should do better, say with one fsync for the whole call.

        Parameters
        ----------
        captures : dict of str to (list of int or None)
            Data code -> the camera indices whose images to delete (None: all of that data code).

        Returns
        -------
        dict
            ``{"released": int, "missing": {data_code: [camera indices] or None}}``: how many images
            were deleted, and what was asked for that is not stored (None: nothing under that code).
        """
        released, missing = 0, {}
        for code, cameras in captures.items():
            try:
                released += self.release(code, cameras)
                continue
            except ImageUnavailable:
                if cameras is None:
                    missing[code] = None
                    continue
            for camera in cameras:
                try:
                    released += self.release(code, [camera])
                except ImageUnavailable:
                    missing.setdefault(code, []).append(camera)
        return {"released": released, "missing": missing}

    @abstractmethod
    def pending(self) -> dict[str, list[int]]:
        """Data codes still stored, with the camera indices stored under each."""

    @abstractmethod
    def configure(self, settings: dict, camera: int | None = None) -> list[dict]:
        """Apply settings (``resolution``, ``encoding``, ``rotation``, ``controls``) to one camera or all.

        Returns
        -------
        list of dict
            The resulting settings of each camera configured.
        """

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """Health of the node: id, cameras, spool usage, pending captures, clock offset if known."""

    def preview_frame(self, camera: int = 0, after: int = 0) -> tuple[memoryview, dict]:
        """The newest live-preview frame of a camera, as JPEG, for a controller that relays previews.

        Optional: a node that does not serve it is relayed through its MJPEG URLs instead. A secured
        node serves its MJPEG on loopback only, so its previews reach the controller this way.

        Parameters
        ----------
        camera : int
            The camera's index.
        after : int
            The number of the frame the caller has: no image comes back until a newer one exists.

        Returns
        -------
        tuple of (memoryview, dict)
            The JPEG (empty when there is no newer frame) and ``{"seq", "camera"}``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not serve preview frames")

    def settings_revision(self) -> str:
        """A token that changes whenever a camera's settings may have changed, and at every start.

        Optional: a controller keeping the cameras' settings compares it when it checks on an idle
        node and asks for :meth:`cameras` again when it changed; without it, it only pings.
        """
        raise NotImplementedError(f"{type(self).__name__} does not serve a settings revision")


def split_stills(data: bytes | memoryview, info: dict) -> list[memoryview]:
    """Split the result of ``retrieve_stills_jpg``/``png`` into one file per camera (no copy)."""
    view = memoryview(data)
    out, offset = [], 0
    for size in info["sizes"]:
        out.append(view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise ValueError(f"stills sizes add up to {offset} bytes but {len(view)} were received")
    return out


__all__ += ["split_stills"]
