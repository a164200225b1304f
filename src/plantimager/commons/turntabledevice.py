"""Turntable interface: a motorised stage turning the object in front of the cameras.

A turntable is a device of its own on the same RPC as the cameras: it registers with the device
registry as type ``"turntable"``, and any client drives it through :class:`TurntableClient`.
Angles are in degrees about the vertical axis, counter-clockwise seen from above, and always
reported in ``[0, 360)``; a move goes the shorter way round.

A move is asynchronous: :meth:`Turntable.move_to` and :meth:`Turntable.home` start it and return
its number at once; ``settled`` is emitted with that number once the stage has stopped there. A
client waits for a move with :func:`wait_settled`, which listens for the signal and also reads
``moving``, so a signal emitted before it listened is not missed.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from .errors import PlantImagerError, ValidationError
from .number import is_finite
from .RPC import RPCClient, RPCProperty, RPCSignal

__all__ = [
    "DEVICE_TYPE",
    "MAX_SPEED",
    "Turntable",
    "TurntableClient",
    "check_angle",
    "check_speed",
    "check_time",
    "normalise_angle",
    "wait_settled",
]

#: The registry device type of turntables.
DEVICE_TYPE = "turntable"
#: Fastest speed a turntable accepts, in degrees per second.
MAX_SPEED = 3600.0


def normalise_angle(angle: float) -> float:
    """Return ``angle`` (degrees) brought into ``[0, 360)``."""
    value = math.fmod(float(angle), 360.0)
    if value < 0.0:
        value += 360.0
    return 0.0 if value >= 360.0 else value


def check_angle(angle: Any, what: str = "angle") -> float:
    """Return ``angle`` as a float in ``[0, 360)``.

    Raises
    ------
    ValidationError
        If it is not a finite real number.
    """
    if not is_finite(angle):
        raise ValidationError(f"{what} must be a finite number of degrees, got {angle!r}")
    return normalise_angle(angle)


def check_speed(speed: Any) -> float:
    """Return ``speed`` (degrees per second) as a float.

    Raises
    ------
    ValidationError
        If it is not a number in ``(0, MAX_SPEED]``.
    """
    if not is_finite(speed) or not 0.0 < speed <= MAX_SPEED:
        raise ValidationError(
            f"speed must be a number of degrees per second in (0, {MAX_SPEED:g}], got {speed!r}"
        )
    return float(speed)


def check_time(when: Any) -> float:
    """Return ``when`` (wall-clock seconds since the epoch, as :meth:`Turntable.position_at` takes it).

    Raises
    ------
    ValidationError
        If it is not a finite real number.
    """
    if not is_finite(when):
        raise ValidationError(
            f"when must be a time: a finite number of seconds since the epoch, got {when!r}"
        )
    return float(when)


class Turntable(ABC):
    """A turntable reachable over RPC.

    Signals
    -------
    positionChanged(float)
        The angle, emitted while the stage turns (a few times per second) and when it stops.
    targetChanged(float)
        The angle of the move just started.
    movingChanged(bool)
        True when a move starts, False when the stage has stopped.
    speedChanged(float)
        The new speed, in degrees per second.
    settled(dict)
        ``{"move": int, "position": float}`` once the stage has stopped at the end of a move.
    """

    positionChanged = RPCSignal(float)
    targetChanged = RPCSignal(float)
    movingChanged = RPCSignal(bool)
    speedChanged = RPCSignal(float)
    settled = RPCSignal(dict)

    @RPCProperty(notify=positionChanged)
    @abstractmethod
    def position(self) -> float:
        """The current angle in degrees, in ``[0, 360)``, read at the instant it is asked (read-only)."""

    @RPCProperty(notify=targetChanged)
    @abstractmethod
    def target(self) -> float:
        """The angle of the latest move, in degrees; the position once it has settled (read-only)."""

    @RPCProperty(notify=movingChanged)
    @abstractmethod
    def moving(self) -> bool:
        """True while the stage turns (read-only)."""

    @RPCProperty(notify=speedChanged)
    @abstractmethod
    def speed(self) -> float:
        """Turning speed in degrees per second, in ``(0, MAX_SPEED]``; applies to the next move."""

    @speed.setter
    @abstractmethod
    def speed(self, value: float) -> None: ...

    @abstractmethod
    def move_to(self, angle: float) -> int:
        """Start turning to ``angle`` (degrees, any finite value; taken modulo 360) the shorter way.

        A move started while another runs replaces it, from where the stage is.

        Returns
        -------
        int
            The number of the move, carried by its ``settled`` signal.

        Raises
        ------
        ValidationError
            If ``angle`` is not a finite number.
        """

    @abstractmethod
    def home(self) -> int:
        """Start turning back to the reference angle 0; returns the number of the move."""

    @abstractmethod
    def position_at(self, when: float) -> float:
        """Where the stage was at wall-clock time ``when`` (seconds since the epoch), degrees.

        Answered from the record of the recent moves: what a camera that fired at ``when`` saw,
        however late it asks. A time after now is answered with the position now.

        Raises
        ------
        ValidationError
            If ``when`` is not a finite number or older than the moves remembered.
        """

    @abstractmethod
    def last_settled(self) -> int:
        """The number of the latest move that has settled (0 before any)."""

    @abstractmethod
    def ping(self) -> bool:
        """Return ``True``: the turntable is up and answering."""


@RPCClient.register_interface(Turntable)
class TurntableClient(Turntable, RPCClient):
    """Client proxy of a turntable server.

    Examples
    --------
    ::

        table = TurntableClient(zmq.Context.instance(), "tcp://127.0.0.1:10345")
        wait_settled(table, table.move_to(90.0), timeout=10)
    """


def wait_settled(table: Turntable, move: int, timeout: float) -> float:
    """Wait until move number ``move`` of ``table`` (or a later one) has settled; return the angle.

    Works on a local turntable and on a :class:`TurntableClient` alike: it is woken by the
    ``settled`` signal and checks :meth:`Turntable.last_settled` whenever it wakes, so a signal
    emitted before the wait began is not missed.

    Parameters
    ----------
    table : Turntable
        The turntable that started the move.
    move : int
        The number returned by ``move_to`` or ``home``.
    timeout : float
        Longest wait, in seconds.

    Returns
    -------
    float
        The position once settled, in degrees.

    Raises
    ------
    PlantImagerError
        If the move has not settled within ``timeout``.
    """
    woken = threading.Event()

    def on_settled(info: dict) -> None:
        if int(info.get("move", 0)) >= move:
            woken.set()

    table.settled.connect(on_settled)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if table.last_settled() >= move:
                return float(table.position)
            remaining = deadline - time.monotonic()
            if remaining <= 0.0:
                raise PlantImagerError(f"the turntable did not settle move {move} within {timeout:g} s")
            # The signal wakes us at once; the bounded slice re-reads last_settled() in case a
            # signal was lost (a reconnecting subscriber).
            woken.wait(min(remaining, 0.5))
    finally:
        table.settled.disconnect(on_settled)
