"""A simulated camera: serves the shipped views of a synthetic plant, no hardware needed.

Camera ``index`` sees view ``first_view + index`` of the set (modulo its size), so the cameras of
a node see neighbouring azimuths of the same plant, and nodes given consecutive ``first_view``
values (as the demo does) carry on around it.
Stills are the view resized to the current resolution (cropped to its aspect ratio first); the
latest rendering is kept (one for previews, and ``stills_kept`` for stills, keyed by resolution,
control values and turntable angle), so capturing again with the same settings is nearly free.
The still is rendered ahead, when the camera is made and whenever its resolution or controls
change, so a capture never renders at the instant it fires (as a real camera streams frames all
the time).

Given a ``turntable`` (see :mod:`plantimager.camera.world`), the camera shows the synthetic plant
rendered live (:func:`~plantimager.commons.examples.scene.render_view`) from its view's azimuth,
turned by the angle the simulated turntable had when the camera fired (the table answers for
that instant from the record of its moves, so a move begun since the shot does not turn the view);
that angle is recorded in the frame's metadata as ``turntable_deg``. The view of each move's
target angle is rendered as soon as the move starts, so a capture after the stage has settled
usually finds it ready. The scene is deterministic, so a camera that keeps the stills of every angle of a plan
(``stills_kept``) renders nothing when the plan is scanned again: only what a real camera does
(expose, encode, store) is left. A 12 MP still takes 37 MB of memory.

A real sensor's noise makes a 12 MP JPEG about 3 MB; the smooth synthetic views give a sixth of
that. ``noise`` adds deterministic pseudo-random noise of that amplitude to stills (12 gives about
3 MB at 4056x3040), for benchmarks that need camera-like file sizes.

A few controls are simulated and visibly change the image, so tests can see that settings were
applied: ``ExposureTime`` and ``AnalogueGain`` scale the light, ``Brightness`` shifts it and
``Contrast`` stretches it around mid-grey. Preview frames also carry a light band that moves a little
on every frame and the frame number as a row of squares in the top-left corner, so consecutive
previews differ, deterministically.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.examples.pinhole import VFOV_DEG, camera_pose, fitted_intrinsics
from plantimager.commons.examples.scene import default_image_dir
from plantimager.commons.number import is_finite
from plantimager.commons.security import KeyRing

from .backend import LORES_SIZE, CameraBackend, Frame, clamp_resolution
from .pacing import ordinary_thread
from .stillpixels import render_still, tone_table
from .views import TurnedViews
from .world import DEFAULT_REGISTRY_URL, TurntableLink

__all__ = [
    "DEFAULT_MAX_RESOLUTION",
    "DEFAULT_RESOLUTION",
    "SENSOR_HEIGHT_MM",
    "SHIPPED_ELEVATION",
    "DummyBackend",
    "list_images",
]

logger = logging.getLogger(__name__)

#: Largest still resolution of a dummy camera (that of a 12 MP Raspberry Pi HQ camera).
DEFAULT_MAX_RESOLUTION = (4056, 3040)
#: Still resolution of a new dummy camera.
DEFAULT_RESOLUTION = (1280, 960)
#: Elevation, in degrees, from which the shipped views of the plant were rendered.
SHIPPED_ELEVATION = 20.0
#: Height of the simulated sensor in millimetres (that of a 1/2.3" sensor such as the IMX477's).
SENSOR_HEIGHT_MM = 4.712

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_DEFAULT_EXPOSURE_US = 10_000
_CONTROL_RANGES: dict[str, tuple[float, float, float]] = {
    "ExposureTime": (100, 1_000_000, _DEFAULT_EXPOSURE_US),
    "AnalogueGain": (1.0, 16.0, 1.0),
    "Brightness": (-1.0, 1.0, 0.0),
    "Contrast": (0.0, 32.0, 1.0),
}
_BAND_WIDTH = 48
_BAND_STEP = 8
_BAND_GAIN = 40
_BIT_SQUARE = 8
_BITS = 16
_MAX_NOISE = 64
#: Longest wait for a still another thread is rendering, in seconds.
_RENDER_WAIT_S = 120.0


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the image files of ``folder`` (by extension), sorted by name.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValidationError
        If it holds no image file.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {str(path)!r} does not exist or is not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        suffixes = ", ".join(sorted(_IMAGE_SUFFIXES))
        raise ValidationError(f"image folder {str(path)!r} holds no image file ({suffixes})")
    return files


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def _as_rgb(array: Any) -> np.ndarray:
    image = np.asarray(array)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValidationError(
            f"an image must be uint8 of shape (H, W, 3 or 4), got {image.dtype} {image.shape}"
        )
    return np.ascontiguousarray(image[:, :, :3])


class DummyBackend(CameraBackend):
    """A simulated camera serving one view of the synthetic plant.

    Parameters
    ----------
    index : int
        The camera's index; it chooses the view (``first_view + index`` modulo the number of
        views).
    resolution : tuple of int, optional
        Initial still resolution ``(width, height)``, clamped to the allowed range.
    images : folder path or sequence of arrays, optional
        Where the views come from: a folder of image files (sorted by name) or RGB(A) ``uint8``
        arrays. Defaults to the plant views shipped with the package.
    max_resolution : tuple of int, optional
        Largest still resolution.
    noise : int
        Amplitude (0-64) of the deterministic noise added to every still pixel; 0 adds none.
    first_view : int
        The view of camera 0, so that several one-camera nodes on one machine (the demo's) look
        at the plant from different sides.
    turntable : str, optional
        The simulated turntable the plant stands on: its URL or its name in the registry. The
        camera then renders the plant live, at ``render_size``, from azimuth ``360 * view / n``
        (``n`` views: the shipped 24, 15 degrees apart), turned by the turntable's angle.
    turntable_registry : str
        The registry a turntable name is looked up in.
    turntable_keys : KeyRing, optional
        Keys to reach a secured registry and turntable with (the node's own).
    render_size : tuple of int, optional
        Size of the live renderings, resized to the still resolution like the shipped views; by
        default the initial resolution, scaled down to fit in 640x480.
    elevation : float, optional
        The camera's elevation above the turntable's plane, in degrees (-80 to 80), for live
        renderings (with a turntable); the shipped views are seen from 20 degrees.
    clock_offset_ms : float, optional
        The clock offset from NTP time the camera's node reports, ms, as if its host's clock were
        that far off (see :meth:`simulated_clock_offset_ms`); by default the node asks chrony.
    stills_kept : int
        How many stills to keep (the most recently used), at least 1; with a turntable, as many
        live renderings are kept too (at least 4).

    Raises
    ------
    ValidationError
        If ``index`` or ``first_view`` is negative, ``noise`` is out of range or the images are
        unusable.
    FileNotFoundError
        If the image folder does not exist.
    """

    def __init__(
        self,
        index: int = 0,
        resolution: tuple[int, int] = DEFAULT_RESOLUTION,
        images: str | os.PathLike[str] | Sequence[np.ndarray] | None = None,
        *,
        max_resolution: tuple[int, int] = DEFAULT_MAX_RESOLUTION,
        noise: int = 0,
        first_view: int = 0,
        turntable: str | None = None,
        turntable_registry: str = DEFAULT_REGISTRY_URL,
        turntable_keys: KeyRing | None = None,
        render_size: tuple[int, int] | None = None,
        elevation: float | None = None,
        clock_offset_ms: float | None = None,
        stills_kept: int = 1,
    ) -> None:
        if clock_offset_ms is not None and not is_finite(clock_offset_ms):
            raise ValidationError(f"clock_offset_ms must be a number of ms, got {clock_offset_ms!r}")
        self._clock_offset_ms = None if clock_offset_ms is None else float(clock_offset_ms)
        if elevation is not None and turntable is None:
            raise ValidationError("elevation needs live renderings: give a turntable with it")
        if elevation is not None and not (isinstance(elevation, (int, float)) and -80 <= elevation <= 80):
            raise ValidationError(f"elevation must be a number of degrees in [-80, 80], got {elevation!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValidationError(f"camera index must be an int >= 0, got {index!r}")
        if isinstance(first_view, bool) or not isinstance(first_view, int) or first_view < 0:
            raise ValidationError(f"first_view must be an int >= 0, got {first_view!r}")
        if isinstance(noise, bool) or not isinstance(noise, int) or not 0 <= noise <= _MAX_NOISE:
            raise ValidationError(f"noise must be an int in [0, {_MAX_NOISE}], got {noise!r}")
        if isinstance(stills_kept, bool) or not isinstance(stills_kept, int) or stills_kept < 1:
            raise ValidationError(f"stills_kept must be an int >= 1, got {stills_kept!r}")
        self.stills_kept = stills_kept
        self.index = index
        self.noise = noise
        self._max = clamp_resolution(*max_resolution, maximum=(65535, 65535))
        if images is None:
            images = default_image_dir()
        if isinstance(images, (str, os.PathLike)):
            files = list_images(images)
            self.view = (first_view + index) % len(files)
            self.source_name = files[self.view].name
            array = _load_rgb(files[self.view])
        else:
            if len(images) == 0:
                raise ValidationError("images must hold at least one image")
            self.view = (first_view + index) % len(images)
            self.source_name = f"array {self.view}"
            array = _as_rgb(images[self.view])
        self._source = Image.fromarray(array)
        self._lock = threading.Lock()
        self._resolution = clamp_resolution(*resolution, maximum=self._max)
        self._world: TurntableLink | None = None
        # Where the camera stands and the size of what it resizes, when the views are the scene's.
        scene = isinstance(images, (str, os.PathLike)) and Path(images) == default_image_dir()
        self._azimuth = 360.0 * self.view / len(files) if scene else None  # others' images: unknown
        self._elevation = SHIPPED_ELEVATION if elevation is None else float(elevation)
        self._source_size: tuple[int, int] | None = self._source.size if scene else None
        if turntable is not None:
            if not isinstance(images, (str, os.PathLike)) or Path(images) != default_image_dir():
                raise ValidationError("a turntable turns the synthetic plant: give no images with it")
            if render_size is None:
                scale = min(1.0, 640 / self._resolution[0], 480 / self._resolution[1])
                render_size = (
                    max(8, round(self._resolution[0] * scale)),
                    max(8, round(self._resolution[1] * scale)),
                )
            self._turned = TurnedViews(
                360.0 * self.view / len(files),
                tuple(render_size),
                elevation=self._elevation,
                then=self._warm_turned,
                keep=max(4, stills_kept),
            )
            self._source_size = tuple(render_size)
            self._world = TurntableLink(
                turntable, turntable_registry, keys=turntable_keys, on_target=self._turned.prepare
            )
        self._controls: dict[str, float] = {k: v[2] for k, v in _CONTROL_RANGES.items()}
        # The latest stills (most recently used last) and the latest preview: key -> image.
        self._stills: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._preview: tuple[tuple[Any, ...], np.ndarray] | None = None
        self._rendering: dict[tuple[Any, ...], threading.Event] = {}  # stills under way
        self._frames = 0
        self._previews = 0
        self._closed = False
        self._warm()
        if self._world is not None:
            self._world.look_ahead()  # the view of the table's resting angle, ready for the first capture
        logger.debug("dummy camera %d shows %s", index, self.source_name)

    # -- CameraBackend -------------------------------------------------------------------------
    def simulated_clock_offset_ms(self) -> float | None:
        """The ``clock_offset_ms`` given, if any: what this simulated camera's node reports."""
        return self._clock_offset_ms

    @property
    def name(self) -> str:
        """``dummy<index>``."""
        return f"dummy{self.index}"

    @property
    def max_resolution(self) -> tuple[int, int]:
        """The largest still resolution, ``(width, height)``."""
        return self._max

    def get_resolution(self) -> tuple[int, int]:
        """Return the current still resolution, ``(width, height)``."""
        with self._lock:
            return self._resolution

    def set_resolution(self, width: int, height: int) -> tuple[int, int]:
        """Set the still resolution (clamped); returns the one applied."""
        applied = clamp_resolution(width, height, self._max)
        with self._lock:
            self._resolution = applied
        self._warm()
        return applied

    @property
    def control_ranges(self) -> dict[str, tuple[float, float, float]]:
        """``ExposureTime`` (us), ``AnalogueGain``, ``Brightness`` and ``Contrast``: (min, max, default)."""
        return dict(_CONTROL_RANGES)

    @property
    def controls(self) -> dict[str, float]:
        """Current value of each control."""
        with self._lock:
            return dict(self._controls)

    def _apply_controls(self, values: dict[str, float]) -> None:
        with self._lock:
            self._controls.update(values)
        self._warm()

    def optics(self, resolution: tuple[int, int]) -> dict[str, Any] | None:
        """The renderer's exact pinhole fitted to ``resolution`` and the camera's pose in the rig.

        The simulated sensor is as tall as a 1/2.3" one (:data:`SENSOR_HEIGHT_MM`), which gives
        the focal length in millimetres. None for images other than the synthetic scene's.
        """
        if self._azimuth is None or self._source_size is None:
            return None
        intrinsics = fitted_intrinsics(self._source_size, resolution)
        pitch_mm = SENSOR_HEIGHT_MM / (intrinsics["fy"] * 2.0 * math.tan(math.radians(VFOV_DEG) / 2.0))
        rotation, translation = camera_pose(self._azimuth, self._elevation)
        intrinsics.update(
            focal_mm=intrinsics["fy"] * pitch_mm,
            sensor_mm=[resolution[0] * pitch_mm, resolution[1] * pitch_mm],
            source="renderer",
        )
        return {
            "make": "plantimager",
            "model": "simulated camera",
            "intrinsics": intrinsics,
            "pose": {"R": rotation.tolist(), "t": translation.tolist(), "frame": "rig"},
        }

    def capture(self) -> Frame:
        """Return the camera's view at the current resolution with the current controls applied.

        ``captured_ns`` is the wall clock when the call starts; ``sensor_timestamp_ns`` simulates a
        sensor clock with the monotonic clock. The image is read-only and may be shared.
        """
        captured_ns = time.time_ns()
        sensor_ns = time.monotonic_ns()
        with self._lock:
            self._check_open()
            resolution, controls = self._resolution, dict(self._controls)
            self._frames += 1
            number = self._frames
        if self._world is None:
            return Frame(
                self._cached(resolution, controls), captured_ns, sensor_ns, {"frame": number, **controls}
            )
        # The turntable's angle, and the rendering if it is not ready: no longer a firing thread's
        # real-time work (the capture time is taken), so it shares the CPUs like any other.
        ordinary_thread()
        angle = self._world.angle(captured_ns / 1e9)
        image = self._cached(resolution, controls, source=self._turned.view(angle))
        return Frame(image, captured_ns, sensor_ns, {"frame": number, **controls, "turntable_deg": angle})

    def capture_lores(self) -> np.ndarray:
        """Return a 640x480 preview frame with a moving light band and the frame number drawn in."""
        with self._lock:
            self._check_open()
            controls = dict(self._controls)
            self._previews += 1
            number = self._previews
        out = self._cached(LORES_SIZE, controls, still=False).copy()
        width = out.shape[1]
        x0 = (number * _BAND_STEP) % (width + _BAND_WIDTH) - _BAND_WIDTH
        band = out[:, max(x0, 0) : max(x0 + _BAND_WIDTH, 0)]
        np.copyto(band, np.where(band > 255 - _BAND_GAIN, 255, band + _BAND_GAIN).astype(np.uint8))
        for bit in range(_BITS):
            x = 4 + bit * (_BIT_SQUARE + 2)
            out[4 : 4 + _BIT_SQUARE, x : x + _BIT_SQUARE] = 255 if (number >> bit) & 1 else 0
        return out

    def close(self) -> None:
        """Stop the camera; later captures raise."""
        with self._lock:
            self._closed = True
            self._stills.clear()
            self._preview = None
        if self._world is not None:
            self._world.close()
            self._turned.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise PlantImagerError(f"camera {self.name} is closed")

    def _warm(self) -> None:
        # Render the still of the current settings now, not when the camera fires.
        with self._lock:
            if self._closed or self._world is not None:
                return
            resolution, controls = self._resolution, dict(self._controls)
        self._cached(resolution, controls)

    def _warm_turned(self, angle: float, image: Image.Image) -> None:
        # The view of the angle the table is turning to is ready: make the still of it now too.
        with self._lock:
            if self._closed:
                return
            resolution, controls = self._resolution, dict(self._controls)
        self._cached(resolution, controls, source=(angle, image))

    def _cached(
        self,
        size: tuple[int, int],
        controls: dict[str, float],
        *,
        still: bool = True,
        source: tuple[float, Image.Image] | None = None,
    ) -> np.ndarray:
        if source is None and self._world is not None:
            source = self._turned.latest()
        angle, image = source if source is not None else (None, self._source)
        key = (size, tuple(sorted(controls.items())), angle)
        noise = self.noise if still else 0

        def render() -> np.ndarray:
            # Only on a miss: a capture finding its still ready does nothing more on its firing
            # thread, still real-time then, where any work delays the other cameras' firing.
            return render_still(image, size, tone_table(controls, _DEFAULT_EXPOSURE_US), noise, self.index)

        if still:
            return self._still(key, render)
        with self._lock:
            if self._preview is not None and self._preview[0] == key:
                return self._preview[1]
        out = render()
        with self._lock:
            self._preview = (key, out)
        return out

    def _still(self, key: tuple[Any, ...], render: Callable[[], np.ndarray]) -> np.ndarray:
        # The still of ``key``, rendered once: a thread asking for one being rendered waits for it.
        with self._lock:
            if key in self._stills:
                self._stills.move_to_end(key)
                return self._stills[key]
            under_way = self._rendering.get(key)
            if under_way is None:
                self._rendering[key] = done = threading.Event()
        if under_way is not None:
            under_way.wait(_RENDER_WAIT_S)
            with self._lock:
                if key in self._stills:
                    return self._stills[key]
            return render()  # the other rendering failed or was dropped at once: make it here
        try:
            out = render()
            with self._lock:
                if not self._closed:
                    self._stills[key] = out
                    while len(self._stills) > self.stills_kept:
                        self._stills.popitem(last=False)
            return out
        finally:
            with self._lock:
                del self._rendering[key]
            done.set()
