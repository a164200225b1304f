"""``RPCSignalReceiver``: the client thread that receives a server's signals and emits them locally."""

from __future__ import annotations

import logging
import threading
from typing import Any

import zmq

from ..errors import ProtocolError
from .address import parse_url
from .protocol import SIGNAL_CHECK, RPCEvents
from .signals import RPCSignal
from .sockets import SocketOptions, Waker, make_socket
from .wire import decode_object

__all__ = ["RPCSignalReceiver"]

logger = logging.getLogger(__name__)


class RPCSignalReceiver(threading.Thread):
    """Background thread receiving a server's signals and emitting them on the client's signals.

    Every message is handled on its own: an unknown signal name, bad arguments, a failing handler
    or a malformed message is logged and the thread goes on with the next one.

    Parameters
    ----------
    context : zmq.Context
        Context used to create the SUB socket.
    url : str
        The server's signal endpoint, ``tcp://<host>:<signal_port>``.
    signals : dict of str to RPCSignal
        Signal name -> the client's signal to emit.
    options : SocketOptions, optional
        Options of the SUB socket (CURVE keys of a secured server).

    Attributes
    ----------
    port : int
        The signal port of the server.
    received : int
        Number of signals emitted so far.
    """

    def __init__(
        self,
        context: zmq.Context,
        url: str,
        signals: dict[str, RPCSignal],
        options: SocketOptions | None = None,
    ) -> None:
        super().__init__(name=f"rpc-signals-{url}", daemon=True)
        self.context = context
        self.url = url
        self.port = parse_url(url).port
        self.signals = dict(signals)
        self.received = 0
        self._stopping = False
        self._last_seq: int | None = None
        self._checks: dict[str, threading.Event] = {}
        self._checks_lock = threading.Lock()
        self._started_ok = threading.Event()
        self._waker = Waker(context)
        self._socket = make_socket(context, zmq.SUB, ipv6=parse_url(url).is_ipv6, options=options)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(url)

    def expect_check(self, token: str) -> threading.Event:
        """Return an event set when the check message ``token`` arrives."""
        event = threading.Event()
        with self._checks_lock:
            self._checks[token] = event
        return event

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._waker.socket, zmq.POLLIN)
        try:
            while not self._stopping:
                ready = dict(poller.poll(1000))
                if self._socket in ready:
                    for _ in range(1000):  # bounded burst, then check for stop
                        try:
                            frames = self._socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._dispatch(frames)
                if self._waker.socket in ready:
                    self._waker.drain()
        finally:
            self._socket.close()
            self._waker.close()

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            message = decode_object(frames[0])
            event = message.get("event")
            if event == SIGNAL_CHECK:
                with self._checks_lock:
                    waiter = self._checks.pop(str(message.get("token")), None)
                if waiter is not None:
                    waiter.set()
                return
            if event != RPCEvents.EMIT_SIGNAL:
                logger.debug("ignoring signal-channel message with event %r", event)
                return
            self._check_sequence(message.get("seq"))
            name = message.get("signal")
            signal = self.signals.get(name) if isinstance(name, str) else None
            if signal is None:
                # The server may publish signals our interface does not declare: not an error.
                logger.debug("ignoring signal %r from %s: not declared by the interface", name, self.url)
                return
            args = message.get("args", [])
            if not isinstance(args, list):
                raise ProtocolError(f"signal {name}: 'args' must be an array")
            self.received += 1
            signal.emit(*args)
        except Exception as exc:
            logger.warning("dropped a signal message from %s: %s", self.url, exc)

    def _check_sequence(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        if self._last_seq is not None and seq > self._last_seq + 1:
            logger.warning("lost %d signal message(s) from %s", seq - self._last_seq - 1, self.url)
        self._last_seq = seq

    def stop(self) -> None:
        """Stop the thread and wait for it (up to a few seconds)."""
        self._stopping = True
        self._waker.wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
