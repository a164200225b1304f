"""Where the stage was at a given time: the record of a turntable's recent moves.

A camera that reads the table's angle after it fired can be late: if the table began its next move
in between, it reads an angle the object did not have during its exposure. The server keeps the
recent moves (when each started, from where, to where, at what speed) and answers for any recent
instant from them: the stage turns at the speed it was given, the shorter way round (the backend
contract), so an instant at rest is answered exactly and one during a move is where a stage at
that speed was.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from plantimager.commons.errors import ValidationError
from plantimager.commons.turntabledevice import check_time, normalise_angle

from .dummy import shortest_turn

__all__ = ["KEPT_MOVES", "MoveHistory"]

#: How many moves a history remembers (a 360-position scan keeps every move of a full turn).
KEPT_MOVES = 512


class MoveHistory:
    """The recent moves of a stage, to answer where it was at a recent wall-clock instant.

    Parameters
    ----------
    position : float
        Where the stage rests when the record begins, degrees.
    clock : callable, optional
        The wall clock, seconds since the epoch (``time.time`` by default).
    """

    def __init__(self, position: float, *, clock: Any = None) -> None:
        self._clock = clock if callable(clock) else time.time
        self._lock = threading.Lock()
        # (start time, start angle, signed turn, duration, target): each holds until the next.
        self._moves: deque[tuple[float, float, float, float, float]] = deque(maxlen=KEPT_MOVES)
        self._moves.append((self._clock(), position, 0.0, 0.0, position))

    def started(self, start: float, target: float, speed: float) -> None:
        """Record a move beginning now from ``start`` to ``target`` at ``speed`` degrees per second."""
        delta = shortest_turn(start, target)
        with self._lock:
            self._moves.append((self._clock(), start, delta, abs(delta) / speed, target))

    def at(self, when: Any) -> float:
        """Where the stage was at ``when`` (seconds since the epoch), degrees in ``[0, 360)``.

        An instant after now is answered with the position now (the next move is not known).

        Raises
        ------
        ValidationError
            If ``when`` is not a finite number, or older than the oldest move remembered.
        """
        when = check_time(when)
        with self._lock:
            when = min(when, self._clock())
            if when < self._moves[0][0]:
                raise ValidationError(
                    f"when={when:.3f} is before the oldest of the {len(self._moves)} moves this "
                    f"turntable remembers (at {self._moves[0][0]:.3f})"
                )
            move = next(m for m in reversed(self._moves) if m[0] <= when)
        begun, start, delta, duration, target = move
        if when >= begun + duration:
            return target  # exactly where it was sent, like the stage itself
        return normalise_angle(start + delta * (when - begun) / duration)
