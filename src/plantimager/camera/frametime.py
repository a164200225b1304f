"""When a Picamera2 frame was taken: its sensor timestamp, exposure, and the offset to the wall clock.

libcamera stamps each frame with the sensor clock (``SensorTimestamp``, the start of readout) and, on
newer versions, the wall clock (``FrameWallClock``). A synchronised capture needs the
wall-clock time at which the exposure started; these functions work it out from whatever the frame has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from plantimager.commons.number import is_finite

__all__ = [
    "SENSOR_CLOCKS",
    "WALL_SANITY_NS",
    "clock_offset",
    "exposure_ns",
    "exposure_start",
    "wall_time",
]

#: The clocks a sensor may stamp frames with, by the name the backend option uses.
SENSOR_CLOCKS: dict[str, Callable[[], int]] = {
    "monotonic": time.monotonic_ns,
    "boottime": lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME),
}
#: A frame time further than this (plus its exposure) from the capture call is not believed, ns.
WALL_SANITY_NS = 10_000_000_000


def clock_offset(sensor_clock: Callable[[], int]) -> tuple[int, int]:
    """``(wall - sensor clock, uncertainty)`` in ns, from the closest of three paired readings."""
    best: tuple[int, int] | None = None
    for _ in range(3):
        before = time.time_ns()
        sensor = sensor_clock()
        after = time.time_ns()
        if best is None or after - before < best[1]:
            best = ((before + after) // 2 - sensor, after - before)
    assert best is not None
    return best


def wall_time(
    metadata: Mapping[str, Any], offset: int, called_ns: int, clock_name: str
) -> tuple[int, str, bool]:
    """When a frame's exposure started, on the wall clock, and where that time came from.

    Parameters
    ----------
    metadata : mapping
        The frame's metadata (``FrameWallClock``, ``SensorTimestamp``, ``ExposureTime``).
    offset : int
        Wall clock minus sensor clock, ns (:func:`clock_offset`).
    called_ns : int
        Wall-clock time of the capture call, ns: the answer when the frame says nothing.
    clock_name : str
        Name of the sensor clock, for the source text.

    Returns
    -------
    (int, str, bool)
        The time in ns, its source, and whether it is within an exposure and
        :data:`WALL_SANITY_NS` of the call (if not, the caller should not trust it).
    """
    exposure = exposure_ns(metadata)
    wall_clock = metadata.get("FrameWallClock")
    timestamp = metadata.get("SensorTimestamp")
    if isinstance(wall_clock, int) and not isinstance(wall_clock, bool):
        captured, source = wall_clock - exposure, "FrameWallClock"
    elif isinstance(timestamp, int) and not isinstance(timestamp, bool):
        captured, source = timestamp - exposure + offset, f"SensorTimestamp ({clock_name})"
    else:
        return called_ns, "time of the call", True
    return captured, source, abs(captured - called_ns) <= exposure + WALL_SANITY_NS


def exposure_ns(metadata: Mapping[str, Any]) -> int:
    """The frame's exposure time in ns (0 when unknown)."""
    exposure = metadata.get("ExposureTime")
    return round(float(exposure) * 1000) if is_finite(exposure) else 0


def exposure_start(metadata: Mapping[str, Any]) -> int | None:
    """Sensor-clock time at which the frame's exposure started, or None when unknown."""
    timestamp = metadata.get("SensorTimestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return None
    return timestamp - exposure_ns(metadata)
