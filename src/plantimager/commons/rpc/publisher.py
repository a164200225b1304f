"""``SignalPublisher``: the server's PUB socket, on which every signal emission goes out once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

from .address import Endpoint
from .protocol import RPCEvents
from .sockets import SocketOptions, make_socket
from .wire import encode

__all__ = ["SignalPublisher"]

logger = logging.getLogger(__name__)


class SignalPublisher:
    """Publishes the server's signals on a PUB socket, once per emission whatever the client count."""

    def __init__(
        self, context: zmq.Context, endpoint: Endpoint, options: SocketOptions | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self.socket = make_socket(context, zmq.PUB, ipv6=endpoint.is_ipv6, options=options)
        self.socket.bind(endpoint.with_port("*"))
        self.port = int(self.socket.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])

    def forwarder(self, name: str) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            self.publish(name, args)

        return forward

    def publish(self, name: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            if self.socket.closed:
                return
            message = {
                "event": RPCEvents.EMIT_SIGNAL,
                "signal": name,
                "args": list(args),
                "blocking": False,
                "seq": self._seq + 1,
            }
            try:
                self.socket.send(encode(message), zmq.NOBLOCK)
            except (TypeError, zmq.ZMQError) as exc:
                logger.error("could not publish signal %s%r: %s", name, args, exc)
                return
            self._seq += 1

    def send_raw(self, message: dict[str, Any]) -> None:
        with self._lock:
            if not self.socket.closed:
                self.socket.send(encode(message), zmq.NOBLOCK)

    def close(self) -> None:
        with self._lock:
            self.socket.close()
