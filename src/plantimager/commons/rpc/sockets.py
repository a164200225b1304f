"""The one place where plantimager creates ZeroMQ sockets and sets their options.

Every socket of the package (RPC request/reply, signals, registry) is made here, so limits and,
later, encryption keys (CURVE) are configured in a single spot.

Options applied to every socket:

* ``LINGER = 0``: closing never blocks on undelivered messages (a dead peer cannot hang shutdown);
* ``MAXMSGSIZE`` on sockets that receive requests from untrusted peers: a hard cap, well above the
  application limit, so a huge message cannot exhaust memory (libzmq drops the peer). Requests
  between the application limit and the hard cap get a proper error reply from the server;
* ``IPV6`` when the endpoint is an IPv6 address.
"""

from __future__ import annotations

import itertools
import threading

import zmq

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SocketOptions",
    "Waker",
    "default_context",
    "make_socket",
]

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
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, linger_ms: int = 0) -> None:
        self.max_message_size = max_message_size
        self.linger_ms = linger_ms

    def apply(self, sock: zmq.Socket, *, server: bool, ipv6: bool = False) -> None:
        """Set the options on ``sock``; ``server`` marks sockets that receive untrusted requests."""
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        if server and self.max_message_size >= 0:
            sock.setsockopt(zmq.MAXMSGSIZE, max(1 << 20, HARD_CAP_FACTOR * self.max_message_size))
        if ipv6:
            sock.setsockopt(zmq.IPV6, 1)


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
