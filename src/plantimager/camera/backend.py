"""Camera backends: what a camera node drives to take pictures.

A :class:`CameraBackend` is one physical or simulated camera. The node asks it for full-resolution
frames (:meth:`CameraBackend.capture`), small preview frames (:meth:`CameraBackend.capture_lores`),
and changes its resolution and controls; it knows nothing about RPC, spools or encodings.

Backends are found by name (``"dummy"``, and ``"picamera2"`` on a Raspberry Pi)
through :func:`get_backend_factory`, which imports the implementing module only when asked, so
optional hardware libraries are never imported by a node that does not use them.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantimager.commons.errors import PlantImagerError, ValidationError

__all__ = [
    "LORES_SIZE",
    "MIN_RESOLUTION",
    "CameraBackend",
    "Frame",
    "available_backends",
    "clamp_resolution",
    "get_backend_factory",
    "register_backend",
]

logger = logging.getLogger(__name__)

#: Smallest still resolution a backend accepts, ``(width, height)``.
MIN_RESOLUTION = (64, 64)
#: Size of preview frames, ``(width, height)``.
LORES_SIZE = (640, 480)


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured still.

    Attributes
    ----------
    image : numpy.ndarray
        RGB pixels, ``uint8``, shape ``(height, width, 3)``, C-contiguous. It may be read-only (a
        backend may hand out a cached array): copy it before changing it.
    captured_ns : int
        Wall-clock time of the exposure (``time.time_ns()`` scale), taken as close to the exposure
        as the backend can.
    sensor_timestamp_ns : int or None
        The sensor's own timestamp of the frame when the backend knows it (its clock is not the
        wall clock).
    metadata : dict
        What else the backend knows about the frame (applied controls, frame number...).
    """

    image: np.ndarray
    captured_ns: int
    sensor_timestamp_ns: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def clamp_resolution(
    width: Any, height: Any, maximum: tuple[int, int], minimum: tuple[int, int] = MIN_RESOLUTION
) -> tuple[int, int]:
    """Clamp a requested ``(width, height)`` into ``[minimum, maximum]``, each axis on its own.

    Parameters
    ----------
    width, height : int
        The requested size in pixels.
    maximum, minimum : tuple of int
        The bounds, ``(width, height)``.

    Returns
    -------
    tuple of int
        The size that will be applied.

    Raises
    ------
    ValidationError
        If ``width`` or ``height`` is not an integer.
    """
    out = []
    for label, value, low, high in (
        ("width", width, minimum[0], maximum[0]),
        ("height", height, minimum[1], maximum[1]),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValidationError(f"resolution {label} must be an integer, got {value!r}")
        out.append(min(max(int(value), low), high))
    return out[0], out[1]


class CameraBackend(ABC):
    """One camera, physical or simulated, as a node drives it.

    Subclasses implement the abstract members; :meth:`set_controls` validates names and ranges
    against :attr:`control_ranges` and then calls :meth:`_apply_controls`. Every method may be
    called from several threads (capture workers, preview producers, the RPC thread): a subclass
    makes itself thread-safe.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """A short description of the camera (model or kind and its index)."""

    @property
    @abstractmethod
    def max_resolution(self) -> tuple[int, int]:
        """The largest still resolution, ``(width, height)``."""

    @property
    def resolution(self) -> tuple[int, int]:
        """The current still resolution, ``(width, height)``; setting it calls :meth:`set_resolution`."""
        return self.get_resolution()

    @resolution.setter
    def resolution(self, value: tuple[int, int]) -> None:
        width, height = value
        self.set_resolution(width, height)

    @abstractmethod
    def get_resolution(self) -> tuple[int, int]:
        """Return the current still resolution, ``(width, height)``."""

    @abstractmethod
    def set_resolution(self, width: int, height: int) -> tuple[int, int]:
        """Set the still resolution, clamped between :data:`MIN_RESOLUTION` and :attr:`max_resolution`.

        Returns
        -------
        tuple of int
            The resolution applied.

        Raises
        ------
        ValidationError
            If a dimension is not an integer.
        """

    @abstractmethod
    def capture(self) -> Frame:
        """Take one still at the current resolution.

        Returns
        -------
        Frame
            The RGB image with its capture time.
        """

    @abstractmethod
    def capture_lores(self) -> np.ndarray:
        """Take one preview frame: RGB ``uint8`` of shape ``(480, 640, 3)``."""

    def optics(self, resolution: tuple[int, int]) -> dict[str, Any] | None:
        """What is known of the camera's geometry for stills of ``resolution``, or None.

        Returns
        -------
        dict or None
            ``make`` and ``model`` (str), ``intrinsics`` (a COLMAP ``PINHOLE``: ``width``,
            ``height``, ``fx``, ``fy``, ``cx``, ``cy`` in pixels, ``focal_mm`` and ``sensor_mm``
            or None, ``source``) or None, and ``pose`` (``R``, ``t``: world to camera, for
            simulated cameras) or None. The default knows nothing.
        """
        return None

    def simulated_clock_offset_ms(self) -> float | None:
        """For a simulated camera: its host's clock offset from NTP time, ms; None for a real camera.

        A node reports this offset instead of asking its time service (chrony), so a simulated
        rig can show a node whose clock is wrong. The default (a real camera) is None.
        """
        return None

    @property
    @abstractmethod
    def control_ranges(self) -> dict[str, tuple[Any, Any, Any]]:
        """Each control's ``(minimum, maximum, default)``, by its Picamera2 name.

        Values are numbers for most controls; booleans, tuples and rectangles occur on real cameras,
        and backends with such controls override :meth:`validate_controls`.
        """

    @property
    @abstractmethod
    def controls(self) -> dict[str, Any]:
        """Each control's current value, by name."""

    def set_controls(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and apply controls; nothing is applied unless every one is valid.

        Parameters
        ----------
        values : mapping of str to number
            Control name -> new value.

        Returns
        -------
        dict
            All controls after the change (:attr:`controls`).

        Raises
        ------
        ValidationError
            Naming the control and its valid range when a name is unknown or a value is not a number
            inside the range.
        """
        checked = self.validate_controls(values)
        if checked:
            self._apply_controls(checked)
        return self.controls

    def validate_controls(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check controls against :attr:`control_ranges` without applying them.

        Integer controls (integer minimum, maximum and default) take integral values only.

        Returns
        -------
        dict
            The values, as ``int`` for integer controls and ``float`` otherwise.

        Raises
        ------
        ValidationError
            As for :meth:`set_controls`.
        """
        if not isinstance(values, Mapping):
            raise ValidationError(f"controls must be a mapping of name to value, got {type(values).__name__}")
        ranges = self.control_ranges
        checked: dict[str, float] = {}
        for name, value in values.items():
            if name not in ranges:
                known = ", ".join(sorted(ranges)) or "none"
                raise ValidationError(f"unknown control {name!r} on {self.name}; known controls: {known}")
            low, high, default = ranges[name]
            integral = all(isinstance(x, int) for x in (low, high, default))
            where = f"control {name!r} must be a number in [{low}, {high}]"
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValidationError(f"{where}, got {value!r}")
            number = float(value)
            if not math.isfinite(number) or not low <= number <= high:
                raise ValidationError(f"{where}, got {value!r}")
            if integral:
                if number != int(number):
                    raise ValidationError(f"{where} and whole, got {value!r}")
                checked[name] = int(number)
            else:
                checked[name] = number
        return checked

    @abstractmethod
    def _apply_controls(self, values: dict[str, float]) -> None:
        """Apply controls already validated by :meth:`validate_controls`."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the camera. Later captures may fail."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.resolution[0]}x{self.resolution[1]}>"


# -- registry of backends ----------------------------------------------------------------------
BackendFactory = Callable[..., CameraBackend]

_lock = threading.Lock()
_FACTORIES: dict[str, str | BackendFactory] = {
    "dummy": "plantimager.camera.dummy:DummyBackend",
    "picamera2": "plantimager.camera.picamera2:Picamera2Backend",
}


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Make a backend available under ``name``.

    Parameters
    ----------
    name : str
        The name used on the command line (``--backend NAME``).
    factory : str or callable
        ``"package.module:attribute"`` (imported on first use) or a callable. It is called as
        ``factory(index, **options)`` and returns a :class:`CameraBackend` for camera ``index``.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a backend name must be a non-empty str, got {name!r}")
    with _lock:
        _FACTORIES[name] = factory


def available_backends() -> list[str]:
    """Return the names of the known backends, sorted."""
    with _lock:
        return sorted(_FACTORIES)


def get_backend_factory(name: str) -> BackendFactory:
    """Return the factory of the backend called ``name``, importing its module if needed.

    Parameters
    ----------
    name : str
        A name of :func:`available_backends`.

    Returns
    -------
    callable
        ``factory(index, **options) -> CameraBackend``.

    Raises
    ------
    ValidationError
        If no backend has that name (the message lists the known ones).
    PlantImagerError
        If the backend's module cannot be imported (e.g. camera library not installed).
    """
    with _lock:
        target = _FACTORIES.get(name) if isinstance(name, str) else None
        known = ", ".join(sorted(_FACTORIES))
    if target is None:
        raise ValidationError(f"unknown camera backend {name!r}; known backends: {known}")
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PlantImagerError(
            f"camera backend {name!r} cannot be used here: importing {module_name} failed ({exc})"
        ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise PlantImagerError(f"camera backend {name!r}: {target} is not a callable factory")
    return factory
