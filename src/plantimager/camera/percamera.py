"""The members of a camera node that act on one camera.

PEPI's per-camera operations take a camera index (``still``, ``low_res_still``, resolutions); upstream's
``Camera`` interface (``get_image``, ``mode``, ``video_url``, ``rotation``, ``resolution``, ``encoding``,
``config``) acts on the node's first camera. :class:`PerCameraMembers` gathers both for
:class:`~plantimager.camera.node.CameraNodeServer`, which provides the state they work on.
"""

from __future__ import annotations

import time
from typing import Any

from plantimager.commons.cameradevice import Camera, CameraMode, Encoding
from plantimager.commons.errors import ValidationError
from plantimager.commons.mjpeg import MJPEGServer
from plantimager.commons.RPC import RPCProperty, RPCServer

from .slot import CameraSlot, encode_image, raw_pixels, rotate

__all__ = ["PerCameraMembers"]


class PerCameraMembers(Camera):
    """Per-camera operations and the upstream ``Camera`` interface of a camera node.

    A mixin: the node provides ``slots`` (its :class:`~plantimager.camera.slot.CameraSlot` list),
    ``configure(settings, camera)``, the preview server ``_streams`` and the ``_mode`` / ``_video_url``
    state of upstream's ``VIDEO`` mode.
    """

    slots: list[CameraSlot]
    _mode: CameraMode
    _video_url: str
    _streams: MJPEGServer | None

    def slot_at(self, camera: Any) -> CameraSlot:
        """Return the slot of camera index ``camera``.

        Raises
        ------
        ValidationError
            If ``camera`` is not an int, or no camera of this node has that index.
        """
        if isinstance(camera, bool) or not isinstance(camera, int):
            raise ValidationError(f"camera must be a camera index (int), got {camera!r}")
        if not 0 <= camera < len(self.slots):
            raise ValidationError(
                f"camera index {camera} is out of range: this node has {len(self.slots)} camera(s), "
                f"indices 0 to {len(self.slots) - 1}"
            )
        return self.slots[camera]

    # -- per camera (PEPI Camera) ----------------------------------------------------------------
    @RPCServer.register_method_buffer(timeout=30_000)
    def still(self, camera: int = 0) -> tuple[memoryview, dict]:
        """Capture now and return the raw RGB pixels (``uint8``; shape in ``info["shape"]``)."""
        slot = self.slot_at(camera)
        frame = slot.backend.capture()
        return raw_pixels(rotate(frame.image, slot.rotation), slot, frame.captured_ns)

    @RPCServer.register_method_buffer(timeout=30_000)
    def low_res_still(self, camera: int = 0) -> tuple[memoryview, dict]:
        """A 640x480 preview capture as raw RGB pixels (``info["shape"] == [480, 640, 3]``)."""
        slot = self.slot_at(camera)
        return raw_pixels(slot.backend.capture_lores(), slot, time.time_ns())

    @RPCServer.register_method_json(role="viewer")
    def get_max_resolution(self, camera: int = 0) -> list[int]:
        """The camera's largest resolution, ``[width, height]``."""
        return list(self.slot_at(camera).backend.max_resolution)

    @RPCServer.register_method_json(role="viewer")
    def get_current_resolution(self, camera: int = 0) -> list[int]:
        """The camera's still resolution, ``[width, height]``."""
        return list(self.slot_at(camera).backend.resolution)

    @RPCServer.register_method_json
    def set_resolution(self, x: int, y: int, camera: int = 0) -> list[int]:
        """Set the still resolution; returns the one applied (clamped between 64x64 and the maximum)."""
        applied = self.configure({"resolution": [x, y]}, camera)[0]["resolution"]
        return list(applied)

    # -- upstream Camera (acts on camera 0) ------------------------------------------------------
    @RPCServer.register_method_buffer(timeout=30_000)
    def get_image(self, lores: bool = False) -> tuple[memoryview, dict]:
        """Capture on camera 0 now and return the image encoded per :attr:`encoding`.

        Switches to ``STILL`` first if needed. ``lores`` gives a 640x480 preview image.

        Returns
        -------
        tuple of (memoryview, dict)
            The file and ``{"format", "rotation", "size", "camera", "captured_ns"}`` (``size`` is
            the array shape ``[height, width, 3]``).
        """
        if self._mode != CameraMode.STILL:
            self.mode = CameraMode.STILL
        slot = self.slots[0]
        encoding, quality, rotation = slot.snapshot()
        if lores:
            image, captured_ns = slot.backend.capture_lores(), time.time_ns()
        else:
            frame = slot.backend.capture()
            image, captured_ns = frame.image, frame.captured_ns
        image = rotate(image, rotation)
        data = encode_image(image, encoding, quality)
        info = {
            "format": encoding,
            "rotation": rotation,
            "size": list(image.shape),
            "camera": slot.name,
            "captured_ns": captured_ns,
        }
        return memoryview(data), info

    @RPCProperty(notify=Camera.modeChanged)
    def mode(self) -> CameraMode:
        """``STILL`` or ``VIDEO``; ``VIDEO`` sets :attr:`video_url` to camera 0's preview stream."""
        return self._mode

    @mode.setter
    def mode(self, value: CameraMode) -> None:
        mode = CameraMode.parse(value)
        if mode == self._mode:
            return
        if mode == CameraMode.VIDEO:
            if self._streams is None:
                raise ValidationError("this node runs without previews (no stream port), so no VIDEO mode")
            url = self._streams.url_for(self.slots[0].name)
        else:
            url = ""
        self._mode = mode
        if url != self._video_url:
            self._video_url = url
            self.videoUrlChanged.emit(url)
        self.modeChanged.emit(str(mode))

    @RPCProperty(notify=Camera.videoUrlChanged)
    def video_url(self) -> str:
        """Camera 0's MJPEG stream in ``VIDEO`` mode, empty in ``STILL`` mode (read-only)."""
        return self._video_url

    @RPCProperty(notify=Camera.rotationChanged)
    def rotation(self) -> int:
        """Clockwise rotation of camera 0's images: 0, 90, 180 or 270 degrees."""
        return self.slots[0].rotation

    @rotation.setter
    def rotation(self, value: int) -> None:
        self.configure({"rotation": value}, 0)

    @RPCProperty(notify=Camera.resolutionChanged)
    def resolution(self) -> tuple[int, int]:
        """Camera 0's still resolution ``(width, height)``; a new value is clamped to its range."""
        return self.slots[0].backend.resolution

    @resolution.setter
    def resolution(self, value: tuple[int, int]) -> None:
        self.configure({"resolution": list(value)}, 0)

    @RPCProperty(notify=Camera.encodingChanged)
    def encoding(self) -> Encoding:
        """Encoding of camera 0's images, ``"jpeg"`` or ``"png"``."""
        return self.slots[0].encoding  # type: ignore[return-value]

    @encoding.setter
    def encoding(self, value: Encoding) -> None:
        self.configure({"encoding": value}, 0)

    @RPCProperty(notify=Camera.configChanged)
    def config(self) -> dict:
        """Camera 0's controls by their Picamera2 names; setting merges and emits ``configChanged``."""
        return self.slots[0].backend.controls

    @config.setter
    def config(self, value: dict) -> None:
        self.configure({"controls": value}, 0)
