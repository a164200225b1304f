"""The HTTP side of the MJPEG server: its threaded server and the handler of one request."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import select
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .source import IDLE_TICK, FrameSource, valid_name

__all__ = ["NO_CACHE", "StreamHTTPServer", "StreamHandler", "StreamOwner", "peer_gone"]

logger = logging.getLogger(__name__)

#: Headers that keep browsers and proxies from caching a frame.
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


class StreamOwner(Protocol):
    """What a request handler needs of the server it belongs to (:class:`~.server.MJPEGServer`)."""

    client_timeout: float
    snapshot_timeout: float

    @property
    def closing(self) -> bool:
        """True once the server is stopping."""
        ...

    def source_names(self) -> list[str]:
        """The names of the sources, sorted."""
        ...

    def find_source(self, name: str) -> FrameSource | None:
        """The source called ``name``, or None."""
        ...


class StreamHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that owns its connection threads so that they can be ended and joined."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: StreamOwner) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.workers: set[threading.Thread] = set()
        self.connections: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, StreamHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve ``request`` on a thread of its own, which the server keeps so it can join it."""
        worker = threading.Thread(target=self._work, args=(request, client_address), name="mjpeg-client")
        worker.daemon = True
        with self.lock:
            self.workers.add(worker)
            self.connections.add(request)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self.lock:
                self.workers.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        """Close ``request``'s connection, never while another thread is closing it."""
        with self.lock:  # never shut down a socket another thread is closing
            self.connections.discard(request)
            super().shutdown_request(request)

    def cut(self, how: int) -> None:
        """Shut down every open connection in direction ``how``, waking threads blocked on it."""
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(how)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed request: quietly when the network failed, loudly for a bug."""
        if isinstance(sys.exc_info()[1], OSError):  # the network, not a bug: a viewer vanished
            logger.debug("connection with %s failed", client_address, exc_info=True)
        else:
            logger.exception("error while serving %s", client_address)


class StreamHandler(BaseHTTPRequestHandler):
    """Routes one request; a stream response lasts until the viewer or the server goes away."""

    server: StreamHTTPServer
    server_version = "plantimager-mjpeg/1"
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        self.timeout = self.server.owner.client_timeout
        super().setup()

    def do_GET(self) -> None:
        owner = self.server.owner
        if owner.closing:
            self._send_text(HTTPStatus.SERVICE_UNAVAILABLE, "server is stopping")
            return
        path = unquote(urlsplit(self.path).path)
        if path == "/":
            self._send_index()
            return
        routes = (("/stream/", ".mjpg", self._stream), ("/snapshot/", ".jpg", self._snapshot))
        for prefix, suffix, action in routes:
            if path.startswith(prefix) and path.endswith(suffix):
                name = path[len(prefix) : len(path) - len(suffix)]
                if not valid_name(name):
                    self._send_text(HTTPStatus.NOT_FOUND, f"invalid source name {name!r}")
                    return
                source = owner.find_source(name)
                if source is None:
                    self._send_text(HTTPStatus.NOT_FOUND, f"unknown source {name!r}")
                    return
                action(source)
                return
        self._send_text(HTTPStatus.NOT_FOUND, f"no such path {path!r}; see / for the list of sources")

    def _not_allowed(self) -> None:
        self._send_text(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed", Allow="GET")

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def version_string(self) -> str:
        return self.server_version

    def _send_head(self, status: HTTPStatus, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, **NO_CACHE}.items():
            self.send_header(key, value)
        self.end_headers()

    def _send_body(self, status: HTTPStatus, ctype: str, body: bytes, **extra: str) -> None:
        self._send_head(status, {"Content-Type": ctype, "Content-Length": str(len(body)), **extra})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_text(self, status: HTTPStatus, message: str, **extra: str) -> None:
        self._send_body(status, "text/plain; charset=utf-8", (message + "\n").encode("utf-8"), **extra)

    def _send_index(self) -> None:
        sources = [
            {"name": name, "stream": f"/stream/{name}.mjpg", "snapshot": f"/snapshot/{name}.jpg"}
            for name in self.server.owner.source_names()
        ]
        self._send_body(HTTPStatus.OK, "application/json", json.dumps({"sources": sources}).encode("utf-8"))

    def _snapshot(self, source: FrameSource) -> None:
        limit = self.server.owner.snapshot_timeout
        with source.cond:
            frame = source.frame
            if frame is None:
                source.waiting += 1
                source.cond.notify_all()
                start = source.seq
                try:
                    source.cond.wait_for(lambda: source.seq > start or source.closed, timeout=limit)
                finally:
                    source.waiting -= 1
                frame = source.frame if source.seq > start else None
        if frame is None:
            self._send_text(HTTPStatus.SERVICE_UNAVAILABLE, f"no frame from {source.name!r} within {limit} s")
        else:
            self._send_body(HTTPStatus.OK, "image/jpeg", frame)

    def _stream(self, source: FrameSource) -> None:
        boundary = secrets.token_hex(16)
        self._send_head(HTTPStatus.OK, {"Content-Type": f"multipart/x-mixed-replace; boundary={boundary}"})
        opening = f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: ".encode("ascii")
        with source.cond:
            source.viewers += 1
            source.cond.notify_all()
            last = source.seq - 1 if source.frame is not None else source.seq  # a running stream: send now
        try:
            while True:
                with source.cond:
                    source.cond.wait_for(lambda seen=last: source.seq > seen or source.closed, IDLE_TICK)
                    closed, frame = source.closed, source.frame if source.seq > last else None
                    last = source.seq
                if closed:  # the server stops: end the multipart body properly
                    self.wfile.write(f"--{boundary}--\r\n".encode("ascii"))
                    return
                if frame is not None:
                    self.wfile.write(b"".join((opening, b"%d\r\n\r\n" % len(frame), frame, b"\r\n")))
                if peer_gone(self.connection):
                    return
        except OSError as exc:
            logger.debug("viewer %s of %r left: %s", self.client_address, source.name, exc)
        finally:
            with source.cond:
                source.viewers -= 1
                source.cond.notify_all()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def peer_gone(conn: socket.socket) -> bool:
    """Tell, without blocking, whether the viewer closed its end of the connection."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(conn, select.POLLIN)
            readable = bool(poller.poll(0))
        else:
            readable = bool(select.select([conn], [], [], 0)[0])
        return readable and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
