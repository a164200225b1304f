"""The ZAP side of secured servers: which client keys may connect, and what each caller may do.

ZeroMQ asks one ZAP handler per context whether a CURVE client may connect. :class:`Guard` is that
handler for a context: pyzmq's :class:`zmq.auth.thread.ThreadAuthenticator`, with one domain per
secured server, each checking client keys against the server's :class:`~plantimager.commons.security.
KeyRing`; and a thread reading the servers' socket monitors, so that every refused connection is
logged with the peer's address (and, when it got that far, its key id). A guard lives as long as some
server of its context uses it.

:class:`Gate` is one server's use of the guard: its domain, the options of its sockets, and the role of
the key behind each request (the ``User-Id`` ZAP gave the connection, which is the client's public key).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from ..security import KeyRing, Role
from .refusals import HandshakeEvents, RefusalLog
from .sockets import DEFAULT_MAX_MESSAGE_SIZE, SocketOptions, Waker, close_all, make_socket

__all__ = ["Gate", "Guard"]

logger = logging.getLogger(__name__)

_WATCHED = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
)
_TICK_MS = 1000
#: Monitor events queued for the monitor thread at most (a flood of connections must not be lost).
_MONITOR_BACKLOG = 100_000
#: How long a new guard waits for the ZAP endpoint of one stopped just before to be freed.
_ZAP_FREED_S = 2.0
_ZAP_RETRY_S = 0.005


class _Domain:
    """The ZAP check of one server's sockets: its gate's keys, and the log."""

    def __init__(self, gate: Gate, log: RefusalLog, authenticator: _Authenticator) -> None:
        self.gate = gate
        self.log = log
        self.authenticator = authenticator

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """pyzmq's credentials check: is this client key trusted now?"""
        entry, reason = self.gate.keys.check(bytes(z85_key))
        label = self.gate.label
        if entry is None:
            self.log.refused(f"a connection from {self.authenticator.address} to the {label}: {reason}")
            return False
        logger.debug("%s connected to the %s as %s", entry.describe(), label, entry.role)
        return True


class _Authenticator(ThreadAuthenticator):
    """pyzmq's thread authenticator, remembering the peer address of the request being checked."""

    address = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Check one ZAP request (see pyzmq); frame 3 is the peer's address."""
        self.address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)


class Guard:
    """The ZAP handler and the handshake monitor of one ZeroMQ context (see the module documentation).

    Use :meth:`acquire` and :meth:`release`, never the constructor.
    """

    _lock = threading.Lock()
    _guards: dict[int, Guard] = {}

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.log = RefusalLog()
        self.users = 0
        self.authenticator = self._start_authenticator(context)
        self._incoming: queue.SimpleQueue[tuple[zmq.Socket, HandshakeEvents]] = queue.SimpleQueue()
        self._waker = Waker(context)
        self._stopping = False
        self._thread = threading.Thread(target=self._watch, name="zmq-handshake-monitor", daemon=True)
        self._thread.start()

    @staticmethod
    def _start_authenticator(context: zmq.Context) -> _Authenticator:
        """Bind the context's ZAP endpoint, waiting a little for a guard stopped just before.

        ZeroMQ closes sockets in its own reaper thread, so the endpoint of a guard stopped a moment
        ago may still be bound; a ZAP handler of someone else's stays bound, and is reported.
        """
        deadline = time.monotonic() + _ZAP_FREED_S
        while True:
            authenticator = _Authenticator(context, log=logging.getLogger("zmq.auth"))
            try:
                authenticator.start()
                return authenticator
            except zmq.ZMQError as exc:
                authenticator.stop()
                if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"cannot check CURVE keys: another ZAP handler runs in this ZeroMQ context ({exc})"
                    ) from None
            time.sleep(_ZAP_RETRY_S)

    @classmethod
    def acquire(cls, context: zmq.Context) -> Guard:
        """The guard of ``context``, started if needed; pair every call with :meth:`release`."""
        with cls._lock:
            guard = cls._guards.get(id(context))
            if guard is None or guard.context is not context:
                guard = cls._guards[id(context)] = cls(context)
            guard.users += 1
            return guard

    def release(self) -> None:
        """Give the guard back; the last user stops it (its threads and sockets)."""
        with (
            Guard._lock
        ):  # held while stopping: a new guard of the context must not bind the ZAP endpoint first
            self.users -= 1
            if self.users > 0:
                return
            if Guard._guards.get(id(self.context)) is self:
                del Guard._guards[id(self.context)]
            self._stopping = True
            self._waker.wake()
            self._thread.join(5)
            self.authenticator.stop()
        self.log.flush()

    def add_domain(self, domain: str, gate: Gate) -> None:
        """Check the clients of sockets of ZAP domain ``domain`` against the keys of ``gate``."""
        self.authenticator.configure_curve_callback(domain, _Domain(gate, self.log, self.authenticator))

    def remove_domain(self, domain: str) -> None:
        """Forget a domain (its sockets are closed)."""
        self.authenticator.credentials_providers.pop(domain, None)

    def watch(self, sock: zmq.Socket, label: str) -> None:
        """Log the failed handshakes of ``sock``, a socket of ``label`` (from the thread owning it)."""
        address = f"inproc://plantimager-handshakes-{uuid.uuid4().hex}"
        sock.monitor(address, _WATCHED)
        monitor = make_socket(self.context, zmq.PAIR)
        monitor.setsockopt(zmq.RCVHWM, _MONITOR_BACKLOG)  # libzmq drops monitor events beyond it
        monitor.connect(address)
        self._incoming.put((monitor, HandshakeEvents(label, self.log)))  # handed to the monitor thread
        self._waker.wake()

    def _watch(self) -> None:
        poller = zmq.Poller()
        poller.register(self._waker.socket, zmq.POLLIN)
        readers: dict[zmq.Socket, HandshakeEvents] = {}
        try:
            while not self._stopping:
                for sock, _ in poller.poll(_TICK_MS):
                    if sock is self._waker.socket:
                        self._waker.drain()
                    else:
                        self._read(sock, readers, poller)
                while not self._incoming.empty():
                    monitor, events = self._incoming.get()
                    readers[monitor] = events
                    poller.register(monitor, zmq.POLLIN)
                self.log.flush()
        except zmq.ContextTerminated:  # pragma: no cover - the context went first
            pass
        finally:
            while not self._incoming.empty():
                readers[self._incoming.get()[0]] = HandshakeEvents("", self.log)
            close_all([*readers, self._waker])

    def _read(self, sock: zmq.Socket, readers: dict[zmq.Socket, HandshakeEvents], poller: zmq.Poller) -> None:
        for _ in range(1000):  # bounded burst
            try:
                message = parse_monitor_message(sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if message["event"] == zmq.EVENT_MONITOR_STOPPED:
                poller.unregister(sock)
                readers.pop(sock, None)
                sock.close(linger=0)
                return
            readers[sock].handle(message["event"], message["value"])


class Gate:
    """One secured server's use of its context's :class:`Guard`.

    Parameters
    ----------
    context : zmq.Context
        The server's context.
    keys : KeyRing
        The server's key pair and the keys it trusts.
    label : str
        What the server is, for the log (may be changed later, e.g. once its port is known).
    """

    def __init__(self, context: zmq.Context, keys: KeyRing, label: str) -> None:
        self.keys = keys
        self.label = label
        self.domain = f"plantimager-{uuid.uuid4().hex[:16]}"
        self._guard = Guard.acquire(context)
        self._guard.add_domain(self.domain, self)
        self._closed = False

    @property
    def log(self) -> RefusalLog:
        """Where this server's refusals are logged."""
        return self._guard.log

    def options(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> SocketOptions:
        """The options of a server socket of this gate: a CURVE server checked under its domain."""
        return SocketOptions(max_message_size=max_message_size, curve=self.keys.server_curve(self.domain))

    def watch(self, sock: zmq.Socket, what: str = "") -> None:
        """Log the failed handshakes of ``sock`` (from the thread owning it); ``what`` it is, if not the
        server's request socket."""
        self._guard.watch(sock, f"{what} of the {self.label}" if what else self.label)

    def refuse(self, frame: Any, what: str, reason: str) -> None:
        """Log a refused request received in ``frame``: who sent it, from where, and why."""
        try:
            peer = frame.get("Peer-Address")
            key = frame.get("User-Id")
        except zmq.ZMQError:
            peer, key = "?", ""
        self.log.refused(f"{what} from {peer} by {self.keys.describe(key)} at the {self.label}: {reason}")

    @staticmethod
    def unwatch(sock: zmq.Socket) -> None:
        """Stop monitoring ``sock``; call before closing it, from the thread owning it."""
        with contextlib.suppress(zmq.ZMQError):  # already closed, or never monitored
            sock.disable_monitor()

    def caller(self, frame: Any) -> tuple[Role | None, str]:
        """The role now trusted to the key behind a received frame, and the key (Z85 text).

        ``frame`` is a :class:`zmq.Frame` received with ``copy=False`` on a socket of this gate.
        """
        try:
            key = frame.get("User-Id")
        except zmq.ZMQError:  # no metadata: not received on a CURVE connection
            return None, ""
        return self.keys.role_of(key), key

    def close(self) -> None:
        """Stop checking this server's clients (after its sockets are closed). Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._guard.remove_domain(self.domain)
            self._guard.release()
