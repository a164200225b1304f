"""A simulated turntable: a stage that really takes time to turn, at a configurable speed.

The motion is a function of the clock: a move from ``p0`` by ``delta`` degrees (the shorter way)
started at ``t`` is at ``p0 + delta * min(1, (now - t) * speed / |delta|)``. So the position read
at any instant is where the stage is at that instant; the server also answers for a recent
instant (``position_at``), which is what the simulated cameras ask for the moment they fired.
"""

from __future__ import annotations

import math
import threading
import time

from plantimager.commons.turntabledevice import check_angle, check_speed, normalise_angle

from .backend import TurntableBackend

__all__ = ["DEFAULT_SPEED", "DummyTurntable", "shortest_turn"]

#: Speed of a new simulated turntable, in degrees per second.
DEFAULT_SPEED = 90.0


def shortest_turn(start: float, target: float) -> float:
    """The signed turn, in degrees in ``(-180, 180]``, that takes ``start`` to ``target``."""
    delta = math.fmod(target - start, 360.0)
    if delta > 180.0:
        delta -= 360.0
    elif delta <= -180.0:
        delta += 360.0
    return delta


class DummyTurntable(TurntableBackend):
    """A simulated stage.

    Parameters
    ----------
    position : float
        The angle it starts at, in degrees.
    clock : callable, optional
        The monotonic clock, in seconds (``time.monotonic`` by default).

    Raises
    ------
    ValidationError
        If ``position`` is not a finite number.
    """

    def __init__(self, position: float = 0.0, *, clock: object = None) -> None:
        self._clock = clock if callable(clock) else time.monotonic
        self._cond = threading.Condition()
        self._start_pos = check_angle(position, "position")
        self._delta = 0.0
        self._target = self._start_pos
        self._t_start = self._clock()
        self._duration = 0.0
        self._closed = False

    @property
    def name(self) -> str:
        """``"dummy"``."""
        return "dummy"

    def start(self, target: float, speed: float) -> None:
        """Start turning to ``target`` at ``speed`` degrees per second, from where the stage is now."""
        target = check_angle(target, "target")
        speed = check_speed(speed)
        with self._cond:
            now = self._clock()
            here = self._at(now)
            self._start_pos = here
            self._delta = shortest_turn(here, target)
            self._target = target
            self._t_start = now
            self._duration = abs(self._delta) / speed
            self._cond.notify_all()

    def _at(self, now: float) -> float:
        if now >= self._t_start + self._duration:
            return self._target  # exactly where it was sent
        done = max(0.0, (now - self._t_start) / self._duration)
        return normalise_angle(self._start_pos + self._delta * done)

    def position(self) -> float:
        """The angle now, in degrees."""
        with self._cond:
            return self._at(self._clock())

    def moving(self) -> bool:
        """True until the simulated move has had time to finish."""
        with self._cond:
            return self._clock() < self._t_start + self._duration

    def wait(self, timeout: float) -> bool:
        """Wait until the move has finished (or a new one starts), at most ``timeout`` seconds."""
        with self._cond:
            end = self._t_start + self._duration
            remaining = end - self._clock()
            if remaining > 0.0 and not self._closed:
                # Simulated motion: the stage needs this long to get there. A new move wakes us.
                self._cond.wait(min(remaining, max(timeout, 0.0)))
            return self._clock() >= self._t_start + self._duration

    def close(self) -> None:
        """Stop where the stage is."""
        with self._cond:
            now = self._clock()
            here = self._at(now)
            self._start_pos, self._target, self._delta, self._duration, self._t_start = (
                here,
                here,
                0.0,
                0.0,
                now,
            )
            self._closed = True
            self._cond.notify_all()
