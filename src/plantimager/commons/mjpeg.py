"""MJPEG live preview over plain HTTP (standard library only).

Streams JPEG frames as ``multipart/x-mixed-replace``, which a browser ``<img>`` plays as video:
``GET /stream/<name>.mjpg`` streams, ``GET /snapshot/<name>.jpg`` returns one fresh frame and
``GET /`` lists the sources as JSON. Unknown or malformed names get ``404``, other methods ``405``.

Each source is a ``grab()`` callable returning one JPEG frame. Its single producer thread calls it
only while somebody watches, at most ``fps`` times per second, and parks within one frame interval
after the last viewer leaves. The producer publishes the latest frame under a condition variable and
every viewer sends the newest one when it is ready, so all viewers share frames and a slow viewer
skips frames instead of queueing them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["MJPEGServer"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_IDLE_TICK = 0.25  # how often waiting threads re-check for shutdown or a vanished viewer, seconds
_MAX_BACKOFF = 2.0
_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def _valid_name(name: object) -> bool:
    """1 to 64 of ``A-Z a-z 0-9 _ . -``, other than ``.`` and ``..``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and name not in {".", ".."}


class _Source:
    """One frame source: its producer thread and the latest frame shared by all viewers."""

    def __init__(self, name: str, grab: Callable[[], bytes], fps: float) -> None:
        self.name = name
        self.grab = grab
        self.interval = 1.0 / fps
        self.cond = threading.Condition()
        self.frame: bytes | None = None  # latest frame while the producer runs, None while parked
        self.seq = 0  # number of the latest frame
        self.grabbed = 0
        self.viewers = 0  # open stream responses
        self.waiting = 0  # snapshot requests waiting for a frame
        self.idle = True
        self.closed = False
        self.thread: threading.Thread | None = None

    def wanted(self) -> bool:
        return self.viewers + self.waiting > 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"mjpeg-source-{self.name}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _run(self) -> None:
        failures = 0
        due = 0.0
        try:
            while True:
                with self.cond:
                    if not self.wanted() and not self.closed:
                        self.idle, self.frame = True, None
                        self.cond.notify_all()
                        while not self.wanted() and not self.closed:
                            self.cond.wait(1.0)
                    if self.closed:
                        return
                    self.idle = False
                    delay = due - time.monotonic()
                    if delay > 0:
                        self.cond.wait(delay)  # woken early on close; loop to re-check demand
                        continue
                started = time.monotonic()
                try:
                    frame = self._grab_once()
                except Exception:
                    failures += 1
                    backoff = min(0.1 * 2 ** min(failures - 1, 5), _MAX_BACKOFF)
                    level = logging.WARNING if failures == 1 else logging.DEBUG  # no flood while down
                    logger.log(level, "grab() of %r failed (%d in a row)", self.name, failures, exc_info=True)
                    due = time.monotonic() + backoff
                    continue
                if failures:
                    logger.info("grab() of source %r works again after %d failures", self.name, failures)
                    failures = 0
                with self.cond:
                    self.frame = frame
                    self.seq += 1
                    self.grabbed += 1
                    self.cond.notify_all()
                due = started + self.interval
        finally:
            with self.cond:
                self.idle, self.frame = True, None
                self.cond.notify_all()

    def _grab_once(self) -> bytes:
        data = self.grab()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"grab() must return JPEG bytes, got {type(data).__name__}")
        frame = bytes(data)
        if not frame:
            raise ValueError("grab() returned an empty frame")
        return frame


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that owns its connection threads so that they can be ended and joined."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: MJPEGServer) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.workers: set[threading.Thread] = set()
        self.connections: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
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
        if isinstance(sys.exc_info()[1], OSError):  # the network, not a bug: a viewer vanished
            logger.debug("connection with %s failed", client_address, exc_info=True)
        else:
            logger.exception("error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request; a stream response lasts until the viewer or the server goes away."""

    server: _HTTPServer
    server_version = "plantimager-mjpeg/1"
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        self.timeout = self.server.owner.client_timeout
        super().setup()

    def do_GET(self) -> None:
        owner = self.server.owner
        if owner._closing:
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
                if not _valid_name(name):
                    self._send_text(HTTPStatus.NOT_FOUND, f"invalid source name {name!r}")
                    return
                source = owner._sources.get(name)
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
        for key, value in {**headers, **_NO_CACHE}.items():
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

    def _snapshot(self, source: _Source) -> None:
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

    def _stream(self, source: _Source) -> None:
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
                    source.cond.wait_for(lambda seen=last: source.seq > seen or source.closed, _IDLE_TICK)
                    closed, frame = source.closed, source.frame if source.seq > last else None
                    last = source.seq
                if closed:  # the server stops: end the multipart body properly
                    self.wfile.write(f"--{boundary}--\r\n".encode("ascii"))
                    return
                if frame is not None:
                    self.wfile.write(b"".join((opening, b"%d\r\n\r\n" % len(frame), frame, b"\r\n")))
                if _peer_gone(self.connection):
                    return
        except OSError as exc:
            logger.debug("viewer %s of %r left: %s", self.client_address, source.name, exc)
        finally:
            with source.cond:
                source.viewers -= 1
                source.cond.notify_all()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _peer_gone(conn: socket.socket) -> bool:
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


class MJPEGServer:
    """HTTP server streaming named JPEG sources as MJPEG to any number of viewers.

    Parameters
    ----------
    host : str, optional
        Address to listen on. ``"0.0.0.0"`` (or ``"::"``) listens on every interface.
    port : int, optional
        TCP port; 0 lets the operating system pick a free one (see `port`).
    advertise_host : str or None, optional
        Host name or address written into the URLs returned by `url_for`. Defaults to ``host``; when
        ``host`` is a wildcard address and this is not given, the address of the interface that
        carries the default route is used, which may be the wrong one on a host with several networks.
    snapshot_timeout : float, optional
        Seconds a snapshot request waits for a frame before answering ``503``.
    client_timeout : float, optional
        Seconds a viewer may take to send its request or to accept data before it is dropped.

    Notes
    -----
    Threads: one accepting thread, one producer per source and one thread per open request, all
    daemonic and all joined by `stop`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise_host: str | None = None,
        *,
        snapshot_timeout: float = 5.0,
        client_timeout: float = 10.0,
    ) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must lie in [0, 65535], got {port!r}")
        for label, value in (("snapshot_timeout", snapshot_timeout), ("client_timeout", client_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a positive number of seconds, got {value!r}")
        self.host = host
        self.advertise_host = advertise_host
        self.snapshot_timeout = float(snapshot_timeout)
        self.client_timeout = float(client_timeout)
        self._closing = False
        self._requested_port = int(port)
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopped = False

    def add_source(self, name: str, grab: Callable[[], bytes], fps: float = 15.0) -> None:
        """Register a frame source; allowed before or after `start`.

        Parameters
        ----------
        name : str
            Source name used in the URLs: 1 to 64 characters from ``A-Z a-z 0-9 _ . -``, not
            ``.`` or ``..``.
        grab : callable
            Called without arguments from the source's own thread; returns one JPEG frame as bytes.
            Exceptions are logged and the call retried after a short, growing pause.
        fps : float, optional
            Highest number of frames per second grabbed while somebody watches.

        Raises
        ------
        ValueError
            If the name is invalid or taken, or fps is not a positive finite number.
        TypeError
            If grab is not callable.
        """
        if not _valid_name(name):
            raise ValueError(f"invalid source name {name!r}: use 1-64 of A-Z a-z 0-9 _ . - (not '.' or '..')")
        if not callable(grab):
            raise TypeError(f"grab must be callable, got {type(grab).__name__}")
        if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
        with self._lock:
            if self._stopped:
                raise RuntimeError("the server is stopped")
            if name in self._sources:
                raise ValueError(f"a source named {name!r} already exists")
            source = _Source(name, grab, float(fps))
            self._sources[name] = source
            if self._httpd is not None:
                source.start()

    def source_names(self) -> list[str]:
        """Return the names of the sources, in the order they were added."""
        with self._lock:
            return list(self._sources)

    def start(self) -> None:
        """Listen on the socket and start serving.

        Raises
        ------
        RuntimeError
            If the server was already started.
        OSError
            If the address cannot be bound.
        """
        with self._lock:
            if self._httpd is not None or self._stopped:
                raise RuntimeError("an MJPEGServer can be started only once")
            self._httpd = _HTTPServer((self.host, self._requested_port), self)
            self._serve_thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.1,), name="mjpeg-http"
            )
            self._serve_thread.daemon = True
            self._serve_thread.start()
            for source in self._sources.values():
                source.start()
        logger.info("MJPEG server listening on %s:%d", self.host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: end every response, join every thread and close the listening socket.

        Open streams get the closing boundary, then end of file. Calling it again does nothing.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait in total for threads (a ``grab()`` that never returns is logged).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            httpd, serve_thread = self._httpd, self._serve_thread
            sources = list(self._sources.values())
        self._closing = True
        deadline = time.monotonic() + timeout
        if httpd is not None:
            httpd.shutdown()  # no more accepted connections
        for source in sources:
            source.close()
        if httpd is not None:
            httpd.cut(socket.SHUT_RD)  # wakes handlers still reading a request; streams end on their own
            if not _join_all(lambda: list(httpd.workers), min(deadline, time.monotonic() + 1.0)):
                httpd.cut(socket.SHUT_RDWR)  # viewers too slow to take the closing boundary
            _join_all(lambda: list(httpd.workers), deadline)
            httpd.server_close()
        threads = [s.thread for s in sources if s.thread is not None]
        threads += [serve_thread] if serve_thread is not None else []
        _join_all(lambda: threads, deadline)
        alive = [t.name for t in threads + (list(httpd.workers) if httpd else []) if t.is_alive()]
        if alive:
            logger.warning("threads still running after stop(): %s", ", ".join(alive))
        else:
            logger.info("MJPEG server stopped")

    @property
    def port(self) -> int:
        """TCP port the server listens on; reading it before `start` raises `RuntimeError`."""
        if self._httpd is None:
            raise RuntimeError("the server is not started yet")
        return int(self._httpd.server_address[1])

    def url_for(self, name: str) -> str:
        """Return the URL of the MJPEG stream of a source.

        Parameters
        ----------
        name : str
            Source name.

        Returns
        -------
        str
            ``http://<host>:<port>/stream/<name>.mjpg``, with the advertised host.

        Raises
        ------
        KeyError
            If no source has that name (`RuntimeError` if the server is not started).
        """
        return self._url(name, f"/stream/{name}.mjpg")

    def snapshot_url_for(self, name: str) -> str:
        """Return the URL of a single fresh JPEG frame of a source (see `url_for`)."""
        return self._url(name, f"/snapshot/{name}.jpg")

    def frames_grabbed(self, name: str) -> int:
        """Return how many frames the source's ``grab()`` has delivered so far."""
        source = self._source(name)
        with source.cond:
            return source.grabbed

    def clients(self, name: str) -> int:
        """Return how many stream responses of the source are open."""
        source = self._source(name)
        with source.cond:
            return source.viewers

    def wait_idle(self, name: str, timeout: float) -> bool:
        """Wait until the source's producer is parked because nobody watches.

        Parameters
        ----------
        name : str
            Source name.
        timeout : float
            Seconds to wait at most.

        Returns
        -------
        bool
            True if the producer is parked (no ``grab()`` will run until a viewer arrives).
        """
        source = self._source(name)
        with source.cond:
            return source.cond.wait_for(lambda: source.idle and not source.wanted(), timeout=timeout)

    def _source(self, name: str) -> _Source:
        with self._lock:
            try:
                return self._sources[name]
            except KeyError:
                raise KeyError(f"unknown source {name!r}") from None

    def _url(self, name: str, path: str) -> str:
        self._source(name)
        host = self.advertise_host or self.host
        if host in _WILDCARD_HOSTS:
            host = _primary_address()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}{path}"


def _join_all(threads: Callable[[], list[threading.Thread]], deadline: float) -> bool:
    """Join threads until the deadline; return True when all have finished."""
    for thread in threads():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads())


def _primary_address() -> str:
    """Best guess of this host's address on the network carrying the default route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # documentation address: nothing is sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
