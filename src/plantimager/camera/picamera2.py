"""The ``picamera2`` backend: a Raspberry Pi camera module driven through Picamera2 (libcamera).

The camera runs continuously in a still configuration with two streams: ``main`` (stills at the
node's resolution, the sensor's full one by default, format ``"RGB888"``, whose arrays hold **B, G,
R** bytes and are turned into RGB here) and ``lores`` (previews, ``"YUV420"``, the main stream's
aspect ratio within 640x480, converted to RGB here and letterboxed to 640x480).

A still is the first frame whose exposure *started* at or after the call to :meth:`capture`
(exposure start = ``SensorTimestamp - ExposureTime``, on the kernel's monotonic clock), so it is at
most about one frame duration late. Its wall-clock time is ``SensorTimestamp - ExposureTime +
offset``, where ``offset = time.time_ns() - time.monotonic_ns()`` is read just after the frame
arrives (the closest of three readings; ``sensor_clock="boottime"`` reads ``CLOCK_BOOTTIME``
instead). libcamera's ``FrameWallClock`` is used instead when present. See
``docs/raspberry-pi.md`` for the details and their limits.

Controls are the ones the camera reports in ``camera_controls`` (the Picamera2 manual's appendix C
names), checked against the ranges it reports. Picamera2 is imported only when this backend is
used: it comes from Raspberry Pi OS (``apt install python3-picamera2``), so the virtual environment
must be created with ``--system-site-packages``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from plantimager.commons.errors import PlantImagerError, ValidationError

from .backend import CameraBackend, Frame, clamp_resolution
from .controls import ENUM_CONTROLS, check_control, plain
from .frametime import SENSOR_CLOCKS, clock_offset, exposure_start, wall_time
from .picamera2module import MISSING_MESSAGE, check_options, libcamera_transform, load_picamera2, open_camera
from .pixels import STILL_FORMATS, fit_preview, preview_size, still_to_rgb, yuv420_to_rgb
from .sensor import check_focal_mm, sensor_optics

__all__ = [
    "ENUM_CONTROLS",
    "MISSING_MESSAGE",
    "STILL_FORMATS",
    "Picamera2Backend",
    "fit_preview",
    "load_picamera2",
    "preview_size",
    "still_to_rgb",
    "yuv420_to_rgb",
]

logger = logging.getLogger(__name__)

#: Frame metadata kept with a still (when the camera reports it).
_METADATA_KEYS = (  # noqa: SIM905 - a list of names, kept short
    "SensorTimestamp ExposureTime AnalogueGain DigitalGain ColourGains ColourTemperature Lux FrameDuration "
    "AeLocked LensPosition AfState FocusFoM ScalerCrop SensorTemperature"
).split()
#: Frames a capture may drop as too old before it takes one anyway (clock trouble), with a warning.
MAX_STALE_FRAMES = 8


# -- pixels --------------------------------------------------------------------------------------
class _Waiter:
    """A caller waiting for a frame: what it needs and, once served, what it got."""

    def __init__(self, want_main: bool, not_before: int | None) -> None:
        self.want_main, self.not_before, self.skipped, self.done = want_main, not_before, 0, False
        self.error: BaseException | None = None
        self.main: np.ndarray | None = None
        self.lores: np.ndarray | None = None
        self.lores_size = (0, 0)
        self.metadata: dict[str, Any] = {}
        self.offset = (0, 0)  # (wall - sensor clock, uncertainty), ns


class Picamera2Backend(CameraBackend):
    """One Raspberry Pi camera module, through Picamera2.

    Parameters
    ----------
    index : int
        The camera's number (0, or 1 for the second port of a Raspberry Pi 5 or compute module).
    resolution : tuple of int, optional
        Initial still resolution ``(width, height)``, clamped to the sensor's; its full resolution
        by default.
    buffer_count : int
        Buffers of the still configuration (1 to 8). Two let a frame be read out while the next
        one is exposed; one saves memory on boards with little CMA memory at full resolution.
    hflip, vflip : bool
        Mirror the image horizontally / vertically in the camera itself (both: turned 180 degrees),
        for a module mounted that way. Rotations by 90 degrees are the node's ``rotation`` setting.
    still_format : str
        Picamera2 format of the main stream (see :data:`STILL_FORMATS`); converted to RGB anyway.
    sensor_clock : str
        Clock of ``SensorTimestamp``: ``"monotonic"`` (Raspberry Pi) or ``"boottime"``.
    controls : mapping, optional
        Controls applied at start (see :meth:`set_controls`).
    capture_timeout : float
        Longest wait for a frame, seconds (long exposures need more).
    focal_mm : float, optional
        The lens's focal length, for modules without a fixed lens (HQ, Global Shutter); the
        module's own otherwise (see :mod:`plantimager.camera.sensor`).

    Raises
    ------
    PlantImagerError
        If picamera2 is not installed, there is no camera ``index`` or it cannot be opened or
        configured.
    ValidationError
        If an option is not acceptable.
    """

    def __init__(
        self,
        index: int = 0,
        resolution: tuple[int, int] | None = None,
        *,
        buffer_count: int = 2,
        hflip: bool = False,
        vflip: bool = False,
        still_format: str = "RGB888",
        sensor_clock: str = "monotonic",
        controls: Mapping[str, Any] | None = None,
        capture_timeout: float = 10.0,
        focal_mm: float | None = None,
    ) -> None:
        check_options(index, buffer_count, still_format, sensor_clock, capture_timeout, hflip, vflip)
        self._focal_mm = check_focal_mm(focal_mm)
        self.index = index
        self._format = still_format
        self._buffer_count = buffer_count
        self._clock_name = sensor_clock
        self._sensor_clock = SENSOR_CLOCKS[sensor_clock]
        self._timeout = float(capture_timeout)
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._leader = False
        self._reconfiguring = False
        self._closed = False
        self._clock_warned = False
        self._controls: dict[str, Any] = {}
        self._ranges: dict[str, tuple[Any, Any, Any]] = {}
        self._transform = libcamera_transform(hflip, vflip) if hflip or vflip else None
        self._cam = open_camera(load_picamera2(), index)
        try:
            self._properties = properties = dict(getattr(self._cam, "camera_properties", {}) or {})
            self._model = str(properties.get("Model") or "camera")
            width, height = (int(v) for v in self._cam.sensor_resolution)
            self._max = (width, height)
            requested = resolution if resolution is not None else self._max
            self._resolution = clamp_resolution(*requested, maximum=self._max)
            self._lores_size = preview_size(self._resolution)
            self._configure_and_start(self._resolution)
            if controls:
                self.set_controls(controls)
        except BaseException:
            with contextlib.suppress(Exception):
                self._cam.close()
            raise
        logger.info("camera %s ready at %dx%d (sensor %dx%d)", self.name, *self._resolution, *self._max)

    # -- configuration ---------------------------------------------------------------------------
    def _configure_and_start(self, size: tuple[int, int]) -> None:
        options: dict[str, Any] = {
            "main": {"size": size, "format": self._format},
            "lores": {"size": preview_size(size), "format": "YUV420"},
            "buffer_count": self._buffer_count,
            "queue": False,
            "controls": dict(self._controls),
        }
        if self._transform is not None:
            options["transform"] = self._transform
        config = self._cam.create_still_configuration(**options)
        try:
            self._cam.configure(config)
            actual = self._cam.camera_configuration() or config
        except Exception as exc:
            raise PlantImagerError(
                f"camera {self.name} cannot be configured at {size[0]}x{size[1]}: {exc}"
            ) from exc
        main = tuple(int(v) for v in actual["main"]["size"])
        lores = tuple(int(v) for v in actual["lores"]["size"])
        self._resolution = (main[0], main[1])
        self._lores_size = (lores[0], lores[1])
        self._ranges = {
            str(name): tuple(plain(v) for v in limits)  # type: ignore[misc]
            for name, limits in dict(self._cam.camera_controls).items()
        }
        try:
            self._cam.start()
        except Exception as exc:
            raise PlantImagerError(f"camera {self.name} cannot start: {exc}") from exc

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the camera alone: no capture runs while the block runs (waits for the current one)."""
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while self._reconfiguring:  # another reconfiguration first
                self._wait_until(deadline)
            self._check_open()
            self._reconfiguring = True  # from now on no new capture starts
            try:
                while self._leader:  # let the capture in progress finish
                    self._wait_until(deadline)
            except BaseException:
                self._reconfiguring = False
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._reconfiguring = False
                self._cond.notify_all()

    def _wait_until(self, deadline: float) -> None:
        """Wait on the condition (held) until notified; raise once ``deadline`` has passed."""
        self._check_open()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PlantImagerError(f"camera {self.name} is busy: a capture did not finish in time")
        self._cond.wait(remaining)

    # -- CameraBackend ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``picamera2:<index>:<sensor model>``, e.g. ``picamera2:0:imx477``."""
        return f"picamera2:{self.index}:{getattr(self, '_model', 'camera')}"

    @property
    def max_resolution(self) -> tuple[int, int]:
        """The sensor's full resolution, ``(width, height)``."""
        return self._max

    def get_resolution(self) -> tuple[int, int]:
        """Return the current still resolution, ``(width, height)``."""
        return self._resolution

    def set_resolution(self, width: int, height: int) -> tuple[int, int]:
        """Reconfigure the camera for stills of ``width`` x ``height``, clamped to the sensor.

        Captures wait while the camera restarts; controls are kept. libcamera may round a size to
        what the hardware produces: the size applied is returned. If the new configuration fails,
        the previous one is restored and the error raised.

        Raises
        ------
        ValidationError
            If a dimension is not an integer.
        PlantImagerError
            If the camera cannot be reconfigured.
        """
        applied = clamp_resolution(width, height, self._max)
        with self._exclusive():
            if applied == self._resolution:
                return applied
            previous = self._resolution
            self._cam.stop()
            try:
                self._configure_and_start(applied)
            except PlantImagerError:
                logger.exception("camera %s: reconfiguring at %dx%d failed", self.name, *applied)
                with contextlib.suppress(Exception):
                    self._cam.stop()
                self._configure_and_start(previous)
                raise
        logger.info("camera %s now at %dx%d", self.name, *self._resolution)
        return self._resolution

    def optics(self, resolution: tuple[int, int]) -> dict[str, Any] | None:
        """The module's make and model and, when its lens is known, its nominal pinhole."""
        return sensor_optics(self._properties, resolution, self._focal_mm)

    @property
    def control_ranges(self) -> dict[str, tuple[Any, Any, Any]]:
        """Each control's ``(minimum, maximum, default)`` as the camera reports it (``camera_controls``)."""
        return dict(self._ranges)

    @property
    def controls(self) -> dict[str, Any]:
        """The controls set through this backend, by name (the camera's defaults apply to the others)."""
        with self._cond:
            return dict(self._controls)

    def validate_controls(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check controls against the ranges the camera reports, without applying them.

        Numbers must lie in ``[minimum, maximum]`` (whole numbers for integer controls); boolean
        controls take true/false; ``ColourGains`` is ``[red, blue]``; ``FrameDurationLimits`` is
        ``[min_us, max_us]``; ``ScalerCrop`` is ``[x, y, width, height]`` inside the sensor's area;
        enumerated controls (``AfMode``, ``AwbMode``...) also take their names
        (``"continuous"``).

        Returns
        -------
        dict
            The values as they will be applied.

        Raises
        ------
        ValidationError
            Naming the control and its valid range; for an unknown name, listing the known ones.
        """
        if not isinstance(values, Mapping):
            raise ValidationError(f"controls must be a mapping of name to value, got {type(values).__name__}")
        ranges = self._ranges
        checked: dict[str, Any] = {}
        for name, value in values.items():
            if not isinstance(name, str) or name not in ranges:
                known = ", ".join(sorted(ranges)) or "none"
                raise ValidationError(
                    f"unknown control {str(name)[:60]!r} on camera {self.name}; known controls: {known}"
                )
            checked[name] = check_control(name, value, ranges[name])
        return checked

    def _apply_controls(self, values: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while self._reconfiguring:  # a restart would drop controls set meanwhile
                self._wait_until(deadline)
            self._check_open()
            try:
                self._cam.set_controls(dict(values))
            except Exception as exc:
                raise PlantImagerError(f"camera {self.name} refused controls {values}: {exc}") from exc
            self._controls.update(values)

    def capture(self) -> Frame:
        """Take the first frame whose exposure starts now or later, as RGB, with its times.

        Returns
        -------
        Frame
            ``captured_ns`` is the wall-clock start of the exposure, ``sensor_timestamp_ns`` the
            frame's ``SensorTimestamp``; ``metadata`` holds what the camera reported (exposure,
            gains, colour temperature, lux, lens position...) and how the time was obtained.

        Raises
        ------
        PlantImagerError
            If the camera is closed or gives no frame within ``capture_timeout``.
        """
        called_ns = time.time_ns()
        waiter = self._grab(want_main=True, not_before=self._sensor_clock())
        assert waiter.main is not None
        image = still_to_rgb(waiter.main, self._format)
        metadata = waiter.metadata
        captured_ns, source = self._wall_time(metadata, waiter.offset[0], called_ns)
        info = {key: plain(metadata[key]) for key in _METADATA_KEYS if key in metadata}
        info["time_source"] = source
        info["clock_mapping_uncertainty_ns"] = waiter.offset[1]
        if waiter.skipped:
            info["frames_dropped"] = waiter.skipped
        timestamp = metadata.get("SensorTimestamp")
        return Frame(image, captured_ns, timestamp if isinstance(timestamp, int) else None, info)

    def capture_lores(self) -> np.ndarray:
        """The next preview frame: RGB ``uint8`` of shape ``(480, 640, 3)``, letterboxed if needed."""
        waiter = self._grab(want_main=False, not_before=None)
        assert waiter.lores is not None
        width, height = waiter.lores_size
        return fit_preview(yuv420_to_rgb(waiter.lores, width, height))

    def close(self) -> None:
        """Stop and release the camera; waiting captures fail. Safe to call more than once."""
        deadline = time.monotonic() + self._timeout
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            while (self._leader or self._reconfiguring) and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        try:
            self._cam.stop()
        except Exception:
            logger.exception("camera %s did not stop cleanly", self.name)
        finally:
            self._cam.close()

    # -- frames ----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise PlantImagerError(f"camera {self.name} is closed")

    def _grab(self, *, want_main: bool, not_before: int | None) -> _Waiter:
        """Wait for a frame, fetching it ourselves when no other caller is already fetching one.

        One caller at a time (the *leader*) takes requests from Picamera2 and serves every waiting
        caller that the frame suits: a preview takes any frame, a still only one whose exposure
        started after its call. So a still never waits behind a preview of its own camera.
        """
        waiter = _Waiter(want_main, not_before)
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._check_open()
            self._waiters.append(waiter)
            while not waiter.done and (self._leader or self._reconfiguring):
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    self._waiters.remove(waiter)
                    self._check_open()
                    raise PlantImagerError(f"camera {self.name} gave no frame within {self._timeout:g} s")
                self._cond.wait(remaining)
            leading = not waiter.done
            self._leader = self._leader or leading
        try:
            if leading:
                self._lead(waiter, deadline)
        finally:
            with self._cond:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                if leading:
                    self._leader = False
                self._cond.notify_all()
        if waiter.error is not None:
            raise PlantImagerError(f"camera {self.name} failed to capture: {waiter.error}") from waiter.error
        return waiter

    def _lead(self, own: _Waiter, deadline: float) -> None:
        while not own.done:
            self._check_open()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PlantImagerError(f"camera {self.name} gave no frame within {self._timeout:g} s")
            try:
                request = self._cam.capture_request(wait=remaining)
            except Exception as exc:
                with self._cond:
                    for waiter in self._waiters:
                        if not waiter.done:
                            waiter.error, waiter.done = exc, True
                    self._cond.notify_all()
                return
            try:
                self._serve(request)
            finally:
                request.release()

    def _serve(self, request: Any) -> None:
        metadata = dict(request.get_metadata())
        offset = self._clock_offset()
        start = exposure_start(metadata)
        with self._cond:
            pending = [w for w in self._waiters if not w.done]
        served = []
        for waiter in pending:
            if waiter.not_before is None or start is None or start >= waiter.not_before:
                served.append(waiter)
            elif waiter.skipped >= MAX_STALE_FRAMES:
                logger.warning(
                    "camera %s: %d frames in a row started before the capture call; taking this one "
                    "(is sensor_clock=%r right?)",
                    self.name,
                    waiter.skipped,
                    self._clock_name,
                )
                served.append(waiter)
            else:
                waiter.skipped += 1
        if not served:
            return
        main = request.make_array("main") if any(w.want_main for w in served) else None
        lores = request.make_array("lores") if any(not w.want_main for w in served) else None
        with self._cond:
            for waiter in served:
                waiter.main, waiter.lores = (main, None) if waiter.want_main else (None, lores)
                waiter.lores_size = self._lores_size
                waiter.metadata, waiter.offset, waiter.done = metadata, offset, True
            self._cond.notify_all()

    def _clock_offset(self) -> tuple[int, int]:
        return clock_offset(self._sensor_clock)

    def _wall_time(self, metadata: Mapping[str, Any], offset: int, called_ns: int) -> tuple[int, str]:
        captured, source, sane = wall_time(metadata, offset, called_ns, self._clock_name)
        if not sane and not self._clock_warned:
            self._clock_warned = True
            logger.warning(
                "camera %s: frame time %s is %.1f s away from the capture call; using the call's time "
                "(is sensor_clock=%r right?)",
                self.name,
                source,
                (captured - called_ns) / 1e9,
                self._clock_name,
            )
        return (captured, source) if sane else (called_ns, "time of the call")
