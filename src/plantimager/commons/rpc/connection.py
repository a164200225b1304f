"""The client's request socket: one request at a time, replaced after a timeout ("lazy pirate")."""

from __future__ import annotations

import threading
from typing import Any

import zmq

from ..errors import InterfaceError, RPCTimeoutError
from .address import parse_url
from .sockets import SocketOptions, make_socket

__all__ = ["MAX_WAIT_MS", "Connection"]

#: Upper bound on any wait, in ms, used when a server advertises no timeout (``null``).
MAX_WAIT_MS = 10 * 60 * 1000


class Connection:
    """The client's REQ socket, used by one thread at a time, replaced after any timeout.

    Replacing the socket (the ZeroMQ guide's "lazy pirate" pattern) is what keeps a client usable
    after a reply did not come in time: a REQ socket waiting for a reply refuses to send again.
    """

    def __init__(self, context: zmq.Context, url: str, options: SocketOptions | None = None) -> None:
        self.context = context
        self.url = url
        self.options = options
        self.endpoint = parse_url(url)
        self.lock = threading.Lock()
        self.socket: zmq.Socket | None = None
        self._rcvtimeo: int | None = None
        self.closed = False

    def _open(self) -> zmq.Socket:
        sock = make_socket(self.context, zmq.REQ, ipv6=self.endpoint.is_ipv6, options=self.options)
        sock.connect(self.url)
        self.socket, self._rcvtimeo = sock, None
        return sock

    def _discard(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def request(self, frame: bytes, timeout_ms: int | None, *, copy: bool = True) -> list[Any]:
        """Send one request frame and return the reply frames.

        Raises
        ------
        RPCTimeoutError
            If no reply came within ``timeout_ms`` (the socket is then replaced).
        """
        wait = MAX_WAIT_MS if timeout_ms is None else min(int(timeout_ms), MAX_WAIT_MS)
        with self.lock:
            if self.closed:
                raise InterfaceError(f"the client of {self.url} is closed")
            sock = self.socket or self._open()
            if self._rcvtimeo != wait:
                sock.rcvtimeo = self._rcvtimeo = wait
            try:
                sock.send(frame)
                return sock.recv_multipart(copy=copy)
            except zmq.Again:
                self._discard()
                raise RPCTimeoutError(f"no reply from {self.url} within {wait} ms") from None
            except zmq.ZMQError:
                self._discard()
                raise

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._discard()
