"""The one place where plantimager creates ZeroMQ sockets and sets their options.

Every socket of the package (RPC request/reply, signals, registry) is made here, so limits and,
later, encryption keys (CURVE) are configured in a single spot.

Options applied to every socket:

* ``LINGER = 0``: closing never blocks on undelivered messages (a dead peer cannot hang shutdown);
* ``MAXMSGSIZE`` on receiving sockets of servers: oversized requests are dropped by libzmq before
  they are buffered (see :data:`DEFAULT_MAX_MESSAGE_SIZE`);
* ``IMMEDIATE`` on connecting request sockets: messages are only queued to completed connections.
"""

from __future__ import annotations

import threading

import zmq

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SocketOptions",
    "default_context",
    "make_socket",
]

#: Largest request a server accepts, in bytes. Requests are small JSON objects; buffers travel in replies.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


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

    def apply(self, sock: zmq.Socket, *, server: bool) -> None:
        """Set the options on ``sock``; ``server`` marks sockets that receive untrusted requests."""
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        if server and self.max_message_size >= 0:
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_size)


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
    options : SocketOptions, optional
        Overrides of the defaults.

    Returns
    -------
    zmq.Socket
        The new socket; the caller owns it and must close it.
    """
    sock = context.socket(socket_type)
    (options or _DEFAULT_OPTIONS).apply(sock, server=server)
    return sock
