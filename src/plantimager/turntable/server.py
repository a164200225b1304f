"""The turntable server: a :class:`~plantimager.commons.turntabledevice.Turntable` over RPC.

One thread of the server follows each move: it publishes ``positionChanged`` a few times per
second while the stage turns, then ``positionChanged``, ``movingChanged(False)`` and ``settled``
once it has stopped. Requests are answered by the serve loop and never wait for a move.
"""

from __future__ import annotations

import logging
import threading

import zmq

from plantimager.commons.RPC import RPCProperty, RPCServer
from plantimager.commons.security import KeyRing
from plantimager.commons.turntabledevice import Turntable, check_angle, check_speed

from .backend import TurntableBackend
from .dummy import DEFAULT_SPEED
from .history import MoveHistory

__all__ = ["POSITION_INTERVAL", "TurntableServer"]

logger = logging.getLogger(__name__)

#: Seconds between two ``positionChanged`` signals while the stage turns.
POSITION_INTERVAL = 0.1


class TurntableServer(Turntable, RPCServer):
    """Serve one turntable over RPC.

    Parameters
    ----------
    context : zmq.Context
        Context of the RPC sockets.
    url : str
        Where to listen, ``tcp://host:port`` (port 0: picked by the system).
    backend : TurntableBackend
        The motor; the server closes it in :meth:`close`.
    speed : float
        Initial speed in degrees per second.
    alive_timeout : int
        Seconds the registry may wait for a heartbeat.
    keys : KeyRing, optional
        Serve with CurveZMQ: viewers (camera nodes among them) read the angle and follow the
        signals; moving and changing the speed need an operator. None: plaintext.

    Raises
    ------
    ValidationError
        If ``speed`` is out of range.
    """

    def __init__(
        self,
        context: zmq.Context,
        url: str = "tcp://127.0.0.1:0",
        *,
        backend: TurntableBackend,
        speed: float = DEFAULT_SPEED,
        alive_timeout: int = 60,
        keys: KeyRing | None = None,
    ) -> None:
        self._speed = check_speed(speed)
        RPCServer.__init__(self, context, url, alive_timeout, keys=keys)
        self.backend = backend
        self._lock = threading.Lock()
        self._move = 0
        self._settled_no = 0
        self._target = backend.position()
        self._history = MoveHistory(self._target)
        self._moving = False
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name="turntable-motion", daemon=True)
        self._thread.start()

    # -- Turntable ---------------------------------------------------------------------------------
    @RPCProperty(notify=Turntable.positionChanged)
    def position(self) -> float:
        """The current angle in degrees, in ``[0, 360)``, read at the instant it is asked."""
        return self.backend.position()

    @RPCProperty(notify=Turntable.targetChanged)
    def target(self) -> float:
        """The angle of the latest move, in degrees."""
        with self._lock:
            return self._target

    @RPCProperty(notify=Turntable.movingChanged)
    def moving(self) -> bool:
        """True from the start of a move until it has settled."""
        with self._lock:
            return self._moving

    @RPCProperty(notify=Turntable.speedChanged)
    def speed(self) -> float:
        """Turning speed in degrees per second; applies to the next move."""
        with self._lock:
            return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        speed = check_speed(value)
        with self._lock:
            changed, self._speed = speed != self._speed, speed
        if changed:
            self.speedChanged.emit(speed)

    @RPCServer.register_method_json
    def move_to(self, angle: float) -> int:
        """Start turning to ``angle`` degrees the shorter way; returns the move's number.

        Raises
        ------
        ValidationError
            If ``angle`` is not a finite number.
        """
        target = check_angle(angle)
        with self._lock:
            if self._closed:
                raise RuntimeError("this turntable is closed")
            self._move += 1
            number = self._move
            self._history.started(self.backend.position(), target, self._speed)
            self.backend.start(target, self._speed)
            self._target = target
            started = not self._moving
            self._moving = True
        logger.debug("move %d to %.3f deg", number, target)
        self.targetChanged.emit(target)
        if started:
            self.movingChanged.emit(True)
        self._wake.set()
        return number

    @RPCServer.register_method_json
    def home(self) -> int:
        """Start turning back to the reference angle 0; returns the move's number."""
        return self.move_to(0.0)

    @RPCServer.register_method_json(role="viewer")
    def position_at(self, when: float) -> float:
        """Where the stage was at wall-clock time ``when`` (seconds since the epoch), degrees.

        From the record of the recent moves (:class:`~plantimager.turntable.history.MoveHistory`);
        a time after now is answered with the position now.

        Raises
        ------
        ValidationError
            If ``when`` is not a finite number or older than the moves remembered.
        """
        return self._history.at(when)

    @RPCServer.register_method_json(role="viewer")
    def last_settled(self) -> int:
        """The number of the latest move that has settled (0 before any)."""
        with self._lock:
            return self._settled_no

    @RPCServer.register_method_json(role="viewer")
    def ping(self) -> bool:
        """Return ``True``."""
        return True

    # -- motion ------------------------------------------------------------------------------------
    def _follow(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            number = 0
            while not self._closed:
                done = self.backend.wait(POSITION_INTERVAL)
                with self._lock:
                    if done and not self._wake.is_set():
                        if self._move > self._settled_no:  # else already reported
                            number = self._move
                            self._settled_no, self._moving = number, False
                        break
                self.positionChanged.emit(self.backend.position())
                self._wake.clear()
            if self._closed:
                return
            if not number:
                continue
            position = self.backend.position()
            self.positionChanged.emit(position)
            self.movingChanged.emit(False)
            self.settled.emit({"move": number, "position": position})
            logger.debug("move %d settled at %.3f deg", number, position)

    # -- life cycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, stop the stage where it is and close the backend. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop_server()
        self.backend.close()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
