"""A stand-in for the ``picamera2`` package (and the part of ``libcamera`` it exposes), for tests.

It behaves like the real library wherever our backend depends on it:

* ``Picamera2(camera_num)`` opens one of the fake sensors (an ``IndexError`` for a missing one, a
  ``RuntimeError`` when it is already open); ``Picamera2.global_camera_info()`` lists them;
* ``create_still_configuration`` / ``create_preview_configuration`` return plain dicts with the real
  defaults; ``configure`` refuses to run while started, checks formats (``lores`` must be YUV420, as
  on a Raspberry Pi 4) and sizes (``lores`` no larger than ``main``), adjusts sizes to even numbers
  within the sensor like libcamera does, and fills in ``stride``;
* ``camera_controls`` gives ``name -> (min, max, default)``; ``set_controls`` refuses names the
  camera does not have; ``ExposureTime`` and ``FrameDurationLimits`` change the frame timing;
* frames come at a steady frame rate: frame *k*'s read-out starts at ``SensorTimestamp`` (ns of
  ``time.monotonic_ns()``), its exposure ``ExposureTime`` us earlier; ``capture_request`` waits for
  the next frame (or, with ``queue=True`` and several buffers, hands out the last one at once, even
  if it is older than the call) and each frame goes to one caller only;
* ``make_array("main")`` is ``(height, width, 3)`` with **B, G, R** bytes for ``"RGB888"`` (R, G, B
  for ``"BGR888"``, four bytes for the X formats); ``make_array("lores")`` is YUV420 as ``height * 3
  // 2`` rows of ``stride`` bytes (full-range BT.601, chroma averaged over 2x2 blocks);
* requests must be released exactly once, and no more than ``buffer_count`` may be held.

The picture is a colour-bar test pattern (different for each camera) unless a sensor is given its own
``scene``. Use :func:`install` in a test to put the fake in ``sys.modules``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

__all__ = [
    "FakeCameraSystem",
    "FakeSensor",
    "Transform",
    "colour_bars",
    "install",
    "rgb_to_yuv420",
    "solid",
]

MAIN_FORMATS = ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420")
LORES_FORMATS = ("YUV420",)
_READOUT_NS = 1_000_000
_STRIDE_ALIGN = 64
_BARS = np.array(
    [
        [235, 235, 235],
        [235, 235, 16],
        [16, 235, 235],
        [16, 235, 16],
        [235, 16, 235],
        [235, 16, 16],
        [16, 16, 235],
    ],
    dtype=np.uint8,
)


# -- pictures ---------------------------------------------------------------------------------------
def colour_bars(width: int, height: int, index: int = 0) -> np.ndarray:
    """Colour bars (rotated by ``index``) over the top three quarters, a grey ramp below."""
    bars = np.roll(_BARS, index, axis=0)
    columns = np.minimum(np.arange(width) * len(bars) // max(width, 1), len(bars) - 1)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = bars[columns][None, :, :]
    ramp = (np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)
    image[height * 3 // 4 :] = ramp[None, :, None]
    return image


def solid(rgb: tuple[int, int, int]) -> Callable[[int, int], np.ndarray]:
    """A scene of one colour."""

    def scene(width: int, height: int) -> np.ndarray:
        return np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()

    return scene


def rgb_to_yuv420(image: np.ndarray, stride: int) -> np.ndarray:
    """RGB -> YUV420 (full-range BT.601) laid out as Picamera2's ``make_array`` returns it."""
    height, width = image.shape[:2]
    rgb = image.astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    blocks = rgb.reshape(height // 2, 2, width // 2, 2, 3).mean(axis=(1, 3))
    u = -0.168736 * blocks[..., 0] - 0.331264 * blocks[..., 1] + 0.5 * blocks[..., 2] + 128
    v = 0.5 * blocks[..., 0] - 0.418688 * blocks[..., 1] - 0.081312 * blocks[..., 2] + 128
    out = np.zeros(height * 3 // 2 * stride, dtype=np.uint8)
    planes = out[: height * stride].reshape(height, stride)
    planes[:, :width] = np.clip(np.rint(y), 0, 255)
    chroma = (height // 2) * (stride // 2)
    for number, plane in enumerate((u, v)):
        start = height * stride + number * chroma
        view = out[start : start + chroma].reshape(height // 2, stride // 2)
        view[:, : width // 2] = np.clip(np.rint(plane), 0, 255)
    return out.reshape(height * 3 // 2, stride)


# -- libcamera ---------------------------------------------------------------------------------------
class Transform:
    """``libcamera.Transform``: mirroring applied by the camera."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = int(hflip), int(vflip), int(transpose)

    def __repr__(self) -> str:
        return f"<libcamera.Transform hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}>"


# -- the hardware --------------------------------------------------------------------------------------
@dataclass
class FakeSensor:
    """One fake camera module.

    Attributes
    ----------
    model : str
        What ``camera_properties["Model"]`` reports.
    resolution : tuple of int
        ``sensor_resolution``.
    scene : callable, optional
        ``scene(width, height) -> RGB uint8 array``; a test pattern by default.
    frame_us : int
        Frame duration when no control asks for longer.
    exposure_us : int
        Exposure chosen by the automatic exposure (when ``ExposureTime`` is not set).
    autofocus : bool
        Offer ``AfMode`` and ``LensPosition`` (Camera Module 3).
    wall_clock_metadata : bool
        Report ``FrameWallClock`` in the metadata, as recent libcamera versions do.
    """

    model: str = "imx296"
    resolution: tuple[int, int] = (1456, 1088)
    scene: Callable[[int, int], np.ndarray] | None = None
    frame_us: int = 10_000
    exposure_us: int = 2_000
    autofocus: bool = False
    wall_clock_metadata: bool = False

    def control_ranges(self) -> dict[str, tuple[Any, Any, Any]]:
        """``camera_controls`` of this sensor: name -> (min, max, default)."""
        width, height = self.resolution
        ranges: dict[str, tuple[Any, Any, Any]] = {
            "AeEnable": (False, True, None),
            "AwbEnable": (False, True, None),
            "ExposureTime": (29, 1_000_000, None),
            "AnalogueGain": (1.0, 16.0, None),
            "ColourGains": (0.0, 32.0, None),
            "Brightness": (-1.0, 1.0, 0.0),
            "Contrast": (0.0, 32.0, 1.0),
            "Saturation": (0.0, 32.0, 1.0),
            "Sharpness": (0.0, 16.0, 1.0),
            "FrameDurationLimits": (1_000, 1_000_000, None),
            "ScalerCrop": ((0, 0, 64, 64), (0, 0, width, height), (0, 0, width, height)),
            "AwbMode": (0, 7, 0),
            "AeMeteringMode": (0, 3, 0),
            "NoiseReductionMode": (0, 4, 0),
        }
        if self.autofocus:
            ranges |= {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0), "AfTrigger": (0, 1, 0)}
        return ranges


class FakeCameraSystem:
    """The fake camera modules of one test and every ``Picamera2`` opened on them.

    Parameters
    ----------
    sensors : FakeSensor
        The cameras, numbered from 0.
    """

    def __init__(self, *sensors: FakeSensor) -> None:
        self.sensors = list(sensors) or [FakeSensor()]
        self.lock = threading.Lock()
        self.opened: list[FakePicamera2] = []
        self.picamera2 = types.ModuleType("picamera2")
        self.picamera2.__dict__["Picamera2"] = type("Picamera2", (FakePicamera2,), {"system": self})
        self.libcamera = types.ModuleType("libcamera")
        self.libcamera.__dict__["Transform"] = Transform

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make ``import picamera2`` and ``import libcamera`` find the fakes (undone after the test)."""
        monkeypatch.setitem(sys.modules, "picamera2", self.picamera2)
        monkeypatch.setitem(sys.modules, "libcamera", self.libcamera)

    @property
    def held_requests(self) -> int:
        """Requests handed out and not released yet, over every camera."""
        return sum(camera.held for camera in self.opened)

    def in_use(self, index: int) -> bool:
        """True while a ``Picamera2`` holds camera ``index``."""
        return any(camera.camera_num == index and not camera.closed for camera in self.opened)


def install(monkeypatch: pytest.MonkeyPatch, *sensors: FakeSensor) -> FakeCameraSystem:
    """Put a fake picamera2 with ``sensors`` (one default sensor if none) into ``sys.modules``."""
    system = FakeCameraSystem(*sensors)
    system.install(monkeypatch)
    return system


class FakeRequest:
    """A completed request: one frame of every configured stream, and its metadata."""

    def __init__(self, camera: FakePicamera2, config: dict[str, Any], metadata: dict[str, Any]) -> None:
        self._camera = camera
        self._config = config
        self._metadata = metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        """A copy of stream ``name`` as a numpy array, in the stream's format."""
        if self.released:
            raise RuntimeError("make_array on a request that was already released")
        stream = self._config.get(name)
        if not isinstance(stream, dict):
            raise KeyError(f"stream {name!r} is not configured")
        return self._camera._render(stream)

    def get_metadata(self) -> dict[str, Any]:
        """The frame's metadata (a copy)."""
        return dict(self._metadata)

    def release(self) -> None:
        """Give the buffers back to the camera; a second release is an error."""
        if self.released:
            raise RuntimeError("request released twice")
        self.released = True
        with self._camera.system.lock:
            self._camera.held -= 1


class FakePicamera2:
    """The fake ``Picamera2`` class; :class:`FakeCameraSystem` makes a subclass bound to its sensors."""

    system: FakeCameraSystem

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        """The cameras present, as libcamera lists them."""
        return [
            {"Model": s.model, "Location": 2, "Rotation": 0, "Id": f"/base/fake/{s.model}@{i}", "Num": i}
            for i, s in enumerate(cls.system.sensors)
        ]

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        system = self.system
        with system.lock:
            if not 0 <= camera_num < len(system.sensors):
                raise IndexError("list index out of range")
            if system.in_use(camera_num):
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            self.camera_num = camera_num
            self.sensor = system.sensors[camera_num]
            self.closed = False
            self.started = False
            self.held = 0
            system.opened.append(self)
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._controls: dict[str, Any] = {}
        self._scenes: dict[tuple[Any, ...], np.ndarray] = {}
        self._epoch = 0
        self._last = -1
        self.configure_count = 0
        self.control_history: list[dict[str, Any]] = []

    # -- properties ------------------------------------------------------------------------------
    @property
    def sensor_resolution(self) -> tuple[int, int]:
        """The sensor's full resolution."""
        return self.sensor.resolution

    @property
    def camera_properties(self) -> dict[str, Any]:
        """What libcamera knows of the module."""
        return {
            "Model": self.sensor.model,
            "PixelArraySize": self.sensor.resolution,
            "Location": 2,
            "Rotation": 0,
        }

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        """Control name -> (min, max, default)."""
        return self.sensor.control_ranges()

    # -- configuration ---------------------------------------------------------------------------
    def create_still_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Transform | None = None,
        colour_space: Any = None,
        buffer_count: int = 1,
        controls: dict | None = None,
        display: str | None = None,
        encode: str | None = None,
        queue: bool = True,
        sensor: dict | None = None,
        use_case: str = "still",
    ) -> dict[str, Any]:
        """A still configuration: full sensor resolution, ``BGR888`` main stream by default."""
        return self._make_config(
            {"format": "BGR888", "size": self.sensor_resolution}, main, lores, transform, buffer_count,
            {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 1_000_000_000)}, controls, queue, use_case,
        )  # fmt: skip

    def create_preview_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Transform | None = None,
        colour_space: Any = None,
        buffer_count: int = 4,
        controls: dict | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict | None = None,
        use_case: str = "preview",
    ) -> dict[str, Any]:
        """A preview configuration: 640x480 ``XBGR8888`` main stream by default."""
        return self._make_config(
            {"format": "XBGR8888", "size": (640, 480)}, main, lores, transform, buffer_count,
            {"NoiseReductionMode": 3, "FrameDurationLimits": (100, 83333)}, controls, queue, use_case,
        )  # fmt: skip

    def _make_config(
        self,
        main_default: dict[str, Any],
        main: dict | None,
        lores: dict | None,
        transform: Transform | None,
        buffer_count: int,
        controls_default: dict[str, Any],
        controls: dict | None,
        queue: bool,
        use_case: str,
    ) -> dict[str, Any]:
        lores_config = None
        if lores is not None:
            lores_config = {"format": "YUV420", "size": main_default["size"], **lores}
        return {
            "use_case": use_case,
            "transform": transform if transform is not None else Transform(),
            "colour_space": "sYCC",
            "buffer_count": buffer_count,
            "queue": queue,
            "main": {**main_default, **(main or {})},
            "lores": lores_config,
            "raw": None,
            "controls": {**controls_default, **(controls or {})},
            "sensor": {},
            "display": None,
            "encode": None,
        }

    def configure(self, config: dict[str, Any] | None = None) -> None:
        """Check and apply a configuration (camera stopped)."""
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(config, dict) or not isinstance(config.get("main"), dict):
            raise RuntimeError(f"Invalid camera configuration: {config!r}")
        actual = dict(config)
        actual["main"] = self._check_stream(config["main"], MAIN_FORMATS, "main")
        if config.get("lores") is not None:
            lores = self._check_stream(config["lores"], LORES_FORMATS, "lores")
            main_size = actual["main"]["size"]
            if lores["size"][0] > main_size[0] or lores["size"][1] > main_size[1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            actual["lores"] = lores
        count = config.get("buffer_count", 1)
        if not isinstance(count, int) or count < 1:
            raise RuntimeError(f"buffer_count must be a positive int, got {count!r}")
        transform = config.get("transform") or Transform()
        if getattr(transform, "transpose", 0):
            raise RuntimeError("transforms requiring transpose not supported")
        controls = dict(config.get("controls") or {})
        self._check_control_names(controls)
        self._config = actual
        self._controls = controls
        self.configure_count += 1

    def _check_stream(self, stream: Any, formats: tuple[str, ...], name: str) -> dict[str, Any]:
        if not isinstance(stream, dict):
            raise RuntimeError(f"{name} stream configuration must be a dict, got {stream!r}")
        fmt = stream.get("format")
        if fmt not in formats:
            raise RuntimeError(f"Format {fmt!r} not supported for the {name} stream")
        size = stream.get("size")
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise RuntimeError(f"{name} stream size must be two positive ints, got {size!r}")
        max_w, max_h = self.sensor_resolution
        # libcamera adjusts what the hardware cannot do: even sizes, at least 64x64, within the sensor
        width = max(64, min(size[0], max_w)) // 2 * 2
        height = max(64, min(size[1], max_h)) // 2 * 2
        if fmt == "YUV420":
            stride = -(-width // _STRIDE_ALIGN) * _STRIDE_ALIGN
            frame = stride * height * 3 // 2
        else:
            stride = width * (4 if fmt.startswith("X") else 3)
            frame = stride * height
        return {**stream, "size": (width, height), "stride": stride, "framesize": frame}

    def camera_configuration(self) -> dict[str, Any] | None:
        """The configuration applied, sizes as adjusted."""
        return None if self._config is None else dict(self._config)

    def set_controls(self, controls: dict[str, Any]) -> None:
        """Set controls, effective from the next frame."""
        self._check_open()
        self._check_control_names(controls)
        with self._lock:
            self._reanchor()
            self._controls.update(controls)
            self.control_history.append(dict(controls))

    def _check_control_names(self, controls: dict[str, Any]) -> None:
        known = self.camera_controls
        for name in controls:
            if name not in known and name not in ("NoiseReductionMode", "FrameDurationLimits"):
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    # -- running ---------------------------------------------------------------------------------
    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        """Start streaming frames."""
        self._check_open()
        if config is not None:
            self.configure(config)
        if self._config is None:
            raise RuntimeError("Camera has not been configured")
        with self._lock:
            self.started = True
            self._epoch = time.monotonic_ns()
            self._last = -1

    def stop(self) -> None:
        """Stop streaming."""
        self.started = False

    def close(self) -> None:
        """Release the camera."""
        self.started = False
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")

    def _timing(self) -> tuple[int, int]:
        """(frame duration, exposure) in ns, from the controls."""
        exposure = int(self._controls.get("ExposureTime") or self.sensor.exposure_us)
        low, high = self._controls.get("FrameDurationLimits") or (self.sensor.frame_us, self.sensor.frame_us)
        duration = max(int(low), self.sensor.frame_us, exposure + 100)
        duration = min(duration, max(int(high), exposure + 100))
        return duration * 1000, exposure * 1000

    def _reanchor(self) -> None:
        """Restart the frame clock at the next frame boundary (controls changed)."""
        if not self.started:
            return
        period, _ = self._timing()
        now = time.monotonic_ns()
        nxt = self._last + 1 if self._last >= 0 else 0
        boundary = max(self._epoch + nxt * period, now)
        self._epoch, self._last = boundary, -1

    def capture_request(
        self, wait: Any = None, signal_function: Any = None, flush: Any = None
    ) -> FakeRequest:
        """The next completed request (waits for it); release it when done."""
        self._check_open()
        with self._lock:
            if not self.started:
                raise RuntimeError("Camera is not started: capture would wait for ever")
            config = self._config
            assert config is not None
            with self.system.lock:
                if self.held >= config["buffer_count"]:
                    raise RuntimeError("every buffer is held by the application: release your requests")
                self.held += 1
            period, exposure = self._timing()
            now = time.monotonic_ns()
            latest = math.floor((now - self._epoch - _READOUT_NS) / period)
            if config["queue"] and config["buffer_count"] > 1 and latest > self._last:
                frame = latest
            else:
                frame = max(latest, self._last) + 1
            if flush is not None:
                first = int(time.monotonic_ns() if flush is True else flush)
                while self._epoch + frame * period - exposure < first:
                    frame += 1
            self._last = frame
            timestamp = self._epoch + frame * period
            controls = dict(self._controls)
        ready = timestamp + _READOUT_NS
        delay = (ready - time.monotonic_ns()) / 1e9
        if isinstance(wait, (int, float)) and not isinstance(wait, bool) and delay > wait:
            time.sleep(max(0.0, wait))
            with self.system.lock:
                self.held -= 1
            raise TimeoutError("capture_request timed out")
        if delay > 0:
            time.sleep(delay)  # the sensor takes that long: this simulates hardware time
        metadata = self._metadata(timestamp, period, exposure, controls)
        return FakeRequest(self, config, metadata)

    def _metadata(
        self, timestamp: int, period: int, exposure: int, controls: dict[str, Any]
    ) -> dict[str, Any]:
        width, height = self.sensor_resolution
        metadata: dict[str, Any] = {
            "SensorTimestamp": timestamp,
            "ExposureTime": exposure // 1000,
            "AnalogueGain": float(controls.get("AnalogueGain", 2.0)),
            "DigitalGain": 1.0,
            "ColourGains": tuple(controls.get("ColourGains", (1.9, 1.6))),
            "ColourTemperature": 5200,
            "Lux": 420.5,
            "FrameDuration": period // 1000,
            "AeLocked": True,
            "ScalerCrop": tuple(controls.get("ScalerCrop", (0, 0, width, height))),
            "SensorTemperature": 41.0,
        }
        if self.sensor.autofocus:
            metadata |= {"LensPosition": float(controls.get("LensPosition", 1.0)), "AfState": 0}
        if self.sensor.wall_clock_metadata:
            metadata["FrameWallClock"] = timestamp + (time.time_ns() - time.monotonic_ns())
        return metadata

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        """The next frame of stream ``name``."""
        request = self.capture_request(wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def capture_metadata(self, wait: Any = None) -> dict[str, Any]:
        """The next frame's metadata."""
        request = self.capture_request(wait)
        try:
            return request.get_metadata()
        finally:
            request.release()

    # -- pixels ----------------------------------------------------------------------------------
    def _render(self, stream: dict[str, Any]) -> np.ndarray:
        width, height = stream["size"]
        assert self._config is not None
        transform = self._config.get("transform") or Transform()
        key = (width, height, transform.hflip, transform.vflip)
        rgb = self._scenes.get(key)
        if rgb is None:
            scene = self.sensor.scene or (lambda w, h: colour_bars(w, h, self.camera_num))
            rgb = np.ascontiguousarray(scene(width, height), dtype=np.uint8)
            if rgb.shape != (height, width, 3):
                raise AssertionError(f"scene gave {rgb.shape}, expected {(height, width, 3)}")
            if transform.hflip:
                rgb = rgb[:, ::-1]
            if transform.vflip:
                rgb = rgb[::-1]
            rgb = np.ascontiguousarray(rgb)
            self._scenes[key] = rgb
        fmt = stream["format"]
        if fmt == "YUV420":
            return rgb_to_yuv420(rgb, stream["stride"])
        pixels = rgb[:, :, ::-1] if fmt in ("RGB888", "XRGB8888") else rgb
        if fmt.startswith("X"):
            pixels = np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
        return np.ascontiguousarray(pixels)
