"""The one place where plantimager creates ZeroMQ sockets and sets their options.

Every socket of the package (RPC request/reply, signals, registry) is made here, so limits and
encryption keys (CURVE) are configured in a single spot.

Options applied to every socket:

* ``LINGER = 0``: closing never blocks on undelivered messages (a dead peer cannot hang shutdown);
* ``MAXMSGSIZE`` on sockets that receive requests from untrusted peers: a hard cap, well above the
  application limit, so a huge message cannot exhaust memory (libzmq drops the peer). Requests
  between the application limit and the hard cap get a proper error reply from the server;
* ``IPV6`` when the endpoint is an IPv6 address;
* with :class:`~plantimager.commons.security.Curve` keys, CurveZMQ: a server socket is a CURVE
  server whose clients' keys are checked by ZAP under its domain (and refused, never let in, when
  no ZAP handler answers); a client socket holds its key pair and the server's public key.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
import uuid
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..security import Curve

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SocketOptions",
    "Waker",
    "bind_with_retry",
    "close_all",
    "default_context",
    "make_socket",
    "release_endpoint",
]

logger = logging.getLogger(__name__)

#: Largest request a server accepts, in bytes. Requests are small JSON objects; buffers travel in replies.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: libzmq's own cap is this many times the application limit (at least 1 MiB).
HARD_CAP_FACTOR = 4


class SocketOptions:
    """Socket settings shared by every plantimager socket.

    Parameters
    ----------
    max_message_size : int
        Upper bound on an inbound message for server sockets, in bytes (``-1`` for no limit).
    linger_ms : int
        How long a closing socket may wait to deliver pending messages.
    curve : Curve, optional
        CURVE keys: the socket encrypts and authenticates everything (None: plaintext).
    """

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        linger_ms: int = 0,
        curve: Curve | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.linger_ms = linger_ms
        self.curve = curve

    def apply(self, sock: zmq.Socket, *, server: bool, ipv6: bool = False) -> None:
        """Set the options on ``sock``; ``server`` marks sockets that receive untrusted requests."""
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        if server and self.max_message_size >= 0:
            sock.setsockopt(zmq.MAXMSGSIZE, max(1 << 20, HARD_CAP_FACTOR * self.max_message_size))
        if ipv6:
            sock.setsockopt(zmq.IPV6, 1)
        curve = self.curve
        if curve is not None:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
            if curve.server_key is None:
                sock.setsockopt(zmq.CURVE_SERVER, 1)
                sock.setsockopt(zmq.ZAP_DOMAIN, curve.zap_domain.encode())
                sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            else:
                sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)


_DEFAULT_OPTIONS = SocketOptions()
_context_lock = threading.Lock()
_context: zmq.Context | None = None


def default_context() -> zmq.Context:
    """Return the process-wide ZeroMQ context used when a caller gives none."""
    global _context
    with _context_lock:
        if _context is None or _context.closed:
            _context = zmq.Context.instance()
        return _context


def make_socket(
    context: zmq.Context,
    socket_type: int,
    *,
    server: bool = False,
    ipv6: bool = False,
    options: SocketOptions | None = None,
) -> zmq.Socket:
    """Create a socket of ``socket_type`` with the package's options applied.

    Parameters
    ----------
    context : zmq.Context
        Context that owns the socket.
    socket_type : int
        A ZeroMQ socket type such as ``zmq.REQ``.
    server : bool
        True for sockets that receive requests from untrusted peers (size limit applies).
    ipv6 : bool
        Enable IPv6 on the socket.
    options : SocketOptions, optional
        Overrides of the defaults.

    Returns
    -------
    zmq.Socket
        The new socket; the caller owns it and must close it.
    """
    sock = context.socket(socket_type)
    (options or _DEFAULT_OPTIONS).apply(sock, server=server, ipv6=ipv6)
    return sock


_waker_ids = itertools.count()


class Waker:
    """Wakes a thread blocked in ``zmq.Poller.poll``: register :attr:`socket` with the poller.

    :meth:`wake` may be called from any thread; the owning thread drains with :meth:`drain`.

    Parameters
    ----------
    context : zmq.Context
        Context of the poller's other sockets (``inproc`` needs the same context).
    """

    def __init__(self, context: zmq.Context) -> None:
        self._context = context
        self._address = f"inproc://plantimager-waker-{next(_waker_ids)}-{id(self):x}"
        self.socket = make_socket(context, zmq.PULL)
        self.socket.bind(self._address)

    def wake(self) -> None:
        """Wake the owning thread (thread-safe, never blocks)."""
        if self.socket.closed:
            return
        sock = self._context.socket(zmq.PUSH)
        try:
            sock.setsockopt(zmq.LINGER, 100)
            sock.connect(self._address)
            sock.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # already awake with a full queue, or closing
        finally:
            sock.close()

    def drain(self) -> None:
        """Consume pending wake-ups (owning thread only)."""
        try:
            while True:
                self.socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        """Close the socket (owning thread only)."""
        self.socket.close()


def bind_with_retry(sock: zmq.Socket, url: str, attempts: int = 50, pause: float = 0.02) -> None:
    """Bind, retrying for about a second while the port is still held by a socket being closed.

    libzmq releases a closed socket's listener asynchronously, so a server restarted on the same
    port right after the previous one stopped may briefly find it in use.
    """
    for attempt in range(attempts):
        try:
            sock.bind(url)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or attempt == attempts - 1:
                raise
            time.sleep(pause)


def close_all(closables: list[Any]) -> None:
    """Close every socket (or object with ``close``) in ``closables``, ignoring failures."""
    for item in closables:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort
            item.close()


def release_endpoint(context: zmq.Context, sock: zmq.Socket, endpoint: str, timeout: float = 1.0) -> None:
    """Unbind ``endpoint`` and wait until the listener is really closed.

    libzmq closes listeners asynchronously, so a port may still be taken just after ``close()``; waiting for
    the ``EVENT_CLOSED`` of a monitor lets a new registry bind the same port as soon as :meth:`stop` returns.
    """
    address = f"inproc://plantimager-registry-release-{uuid.uuid4().hex}"
    try:
        sock.monitor(address, zmq.EVENT_CLOSED)
    except zmq.ZMQError:  # pragma: no cover - monitoring unavailable: fall back to a plain close
        return
    monitor = make_socket(context, zmq.PAIR)
    try:
        monitor.connect(address)
        sock.unbind(endpoint)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and monitor.poll(max(1, math.ceil(left * 1000))):
            if recv_monitor_message(monitor)["event"] == zmq.EVENT_CLOSED:
                break
    except zmq.ZMQError as exc:  # pragma: no cover - e.g. the context is being terminated
        logger.debug("could not wait for %s to close: %s", endpoint, exc)
    finally:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        monitor.close(linger=0)
