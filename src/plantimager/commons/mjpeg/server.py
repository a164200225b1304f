"""``MJPEGServer``: serves named JPEG sources as MJPEG streams and snapshots over HTTP."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable

from .handler import StreamHTTPServer
from .source import FrameSource, valid_name

__all__ = ["WILDCARD_HOSTS", "MJPEGServer", "join_all", "primary_address"]

#: Hosts that mean "every interface".
WILDCARD_HOSTS = {"", "0.0.0.0", "::"}

logger = logging.getLogger(__name__)


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
        self._sources: dict[str, FrameSource] = {}
        self._httpd: StreamHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopped = False

    @property
    def closing(self) -> bool:
        """True once :meth:`stop` has begun."""
        return self._closing

    def find_source(self, name: str) -> FrameSource | None:
        """The source called ``name``, or None."""
        with self._lock:
            return self._sources.get(name)

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
        if not valid_name(name):
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
            source = FrameSource(name, grab, float(fps))
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
            self._httpd = StreamHTTPServer((self.host, self._requested_port), self)
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
            if not join_all(lambda: list(httpd.workers), min(deadline, time.monotonic() + 1.0)):
                httpd.cut(socket.SHUT_RDWR)  # viewers too slow to take the closing boundary
            join_all(lambda: list(httpd.workers), deadline)
            httpd.server_close()
        threads = [s.thread for s in sources if s.thread is not None]
        threads += [serve_thread] if serve_thread is not None else []
        join_all(lambda: threads, deadline)
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

    def latest_frame(self, name: str, lease: float = 2.0) -> tuple[int, bytes | None]:
        """The newest frame of a source and its number, for a viewer that polls rather than streams.

        The source keeps grabbing frames for ``lease`` seconds after each call; the frame is None
        while it was idle (it starts grabbing at once: poll again a frame interval later).

        Raises
        ------
        KeyError
            If no source has that name.
        """
        return self._source(name).poll(lease)

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

    def _source(self, name: str) -> FrameSource:
        with self._lock:
            try:
                return self._sources[name]
            except KeyError:
                raise KeyError(f"unknown source {name!r}") from None

    def _url(self, name: str, path: str) -> str:
        self._source(name)
        host = self.advertise_host or self.host
        if host in WILDCARD_HOSTS:
            host = primary_address()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}{path}"


def join_all(threads: Callable[[], list[threading.Thread]], deadline: float) -> bool:
    """Join threads until the deadline; return True when all have finished."""
    for thread in threads():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads())


def primary_address() -> str:
    """Best guess of this host's address on the network carrying the default route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # documentation address: nothing is sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
