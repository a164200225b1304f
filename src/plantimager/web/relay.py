"""Camera previews relayed through the controller, so a browser only needs to reach the web server.

Each camera node serves its previews as MJPEG over plain HTTP (``multipart/x-mixed-replace``). For
every camera somebody watches, :class:`PreviewHub` keeps **one** connection to the node (a raw
asyncio socket: the node speaks HTTP/1.0) and hands every new frame to all its viewers. A viewer
that falls behind skips frames rather than queueing them; the last viewer leaving closes the
connection to the node, which then stops producing frames.

Viewers come in two kinds:

* ``/cameras/{camera}/preview.mjpg``: the camera's stream, re-served as MJPEG (an ``<img>`` plays it);
* ``/api/previews.bin``: the frames of every camera on one connection (see :func:`pack_frame`). A
  browser opens at most six HTTP/1.1 connections to one server, so one MJPEG ``<img>`` per card
  would stall every camera beyond the fifth; the page reads this single stream instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MultipartParser",
    "PreviewHub",
    "RelayError",
    "Subscription",
    "mjpeg_part",
    "open_mjpeg",
    "pack_frame",
]

logger = logging.getLogger(__name__)

#: Largest frame accepted from a node, bytes.
MAX_FRAME = 8 * 1024 * 1024
#: Largest response head accepted from a node, bytes.
MAX_HEAD = 16 * 1024
#: Boundary of the MJPEG streams this server sends.
BOUNDARY = "plantimagerframe"
_RETRY_FIRST = 0.25
_RETRY_MAX = 2.0
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d{1,10})\s*$")


class RelayError(Exception):
    """A node's preview stream could not be opened or read (the text says why)."""


# -- parsing a node's stream ---------------------------------------------------------------------------
class MultipartParser:
    """Cut a ``multipart/x-mixed-replace`` body into its parts, fed chunk by chunk.

    Parameters
    ----------
    boundary : bytes
        The boundary from the response's ``Content-Type`` (without the leading ``--``).
    max_part : int
        Largest part accepted, bytes.

    Raises
    ------
    RelayError
        From :meth:`feed`, when a part is larger than ``max_part`` or the stream is not multipart.
    """

    def __init__(self, boundary: bytes, max_part: int = MAX_FRAME) -> None:
        if not boundary:
            raise RelayError("the stream has an empty multipart boundary")
        self._delimiter = b"--" + boundary
        self._max = max_part
        self._buffer = bytearray()
        self._state = "seek"  # seek -> head -> body -> seek ...
        self._length: int | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes of the body; return the parts completed by them, in order."""
        self._buffer += data
        parts: list[bytes] = []
        while not self.ended:
            part = self._step()
            if part is None:
                break
            if part:
                parts.append(part)
        if len(self._buffer) > self._max + MAX_HEAD:
            raise RelayError(f"a preview frame is larger than {self._max} bytes")
        return parts

    def _step(self) -> bytes | None:
        """Advance by one state; b"" for progress without a part, None when more bytes are needed."""
        buf = self._buffer
        if self._state == "seek":
            at = buf.find(self._delimiter)
            if at < 0:
                keep = len(self._delimiter)  # a delimiter may be cut across two chunks
                if len(buf) > keep:
                    del buf[: len(buf) - keep]
                return None
            end = at + len(self._delimiter)
            if len(buf) < end + 2:
                return None
            if buf[end : end + 2] == b"--":
                self.ended = True
                return None
            line_end = buf.find(b"\r\n", end)
            if line_end < 0:
                return None if len(buf) - end < MAX_HEAD else self._bad("no line end after the boundary")
            del buf[: line_end + 2]
            self._state = "head"
            return b""
        if self._state == "head":
            if buf.startswith(b"\r\n"):
                head, skip = b"", 2
            else:
                at = buf.find(b"\r\n\r\n")
                if at < 0:
                    return None if len(buf) < MAX_HEAD else self._bad("part headers too long")
                head, skip = bytes(buf[:at]), at + 4
            del buf[:skip]
            match = _CONTENT_LENGTH.search(head)
            self._length = int(match.group(1)) if match else None
            if self._length is not None and self._length > self._max:
                raise RelayError(f"a preview frame is larger than {self._max} bytes")
            self._state = "body"
            return b""
        # body
        if self._length is not None:
            if len(buf) < self._length:
                return None
            part = bytes(buf[: self._length])
            del buf[: self._length]
        else:
            at = buf.find(b"\r\n" + self._delimiter)
            if at < 0:
                if len(buf) > self._max + len(self._delimiter) + 2:
                    raise RelayError(f"a preview frame is larger than {self._max} bytes")
                return None
            part = bytes(buf[:at])
            del buf[:at]
        self._state = "seek"
        return part or b""

    @staticmethod
    def _bad(why: str) -> bytes:
        raise RelayError(f"not an MJPEG stream: {why}")


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RelayError(f"preview URL {url!r} is not an http:// URL")
    try:
        port = parts.port or 80
    except ValueError:
        raise RelayError(f"preview URL {url!r} has a bad port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


async def open_mjpeg(
    url: str, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, MultipartParser]:
    """Connect to a node's MJPEG stream and read the response head.

    Returns
    -------
    tuple
        The reader and writer of the connection, and a parser for the body.

    Raises
    ------
    RelayError
        If the node cannot be reached within ``timeout`` seconds or does not answer with MJPEG.
    """
    host, port, path = _split_url(url)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise RelayError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
    try:
        target = f"[{host}]" if ":" in host else host
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {target}:{port}\r\nAccept: multipart/x-mixed-replace\r\n"
            "User-Agent: plantimager-web\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        try:
            async with asyncio.timeout(timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise RelayError(f"{url} sent no proper HTTP response head ({type(exc).__name__})") from None
        except TimeoutError:
            raise RelayError(f"{url} did not answer within {timeout:g} s") from None
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise RelayError(f"{url} answered {lines[0]!r}")
        headers = {
            name.strip().lower(): value.strip()
            for name, sep, value in (line.partition(":") for line in lines[1:])
            if sep
        }
        ctype = headers.get("content-type", "")
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/x-mixed-replace") or match is None:
            raise RelayError(f"{url} is not an MJPEG stream (Content-Type {ctype!r})")
        return reader, writer, MultipartParser(match.group(1).encode("latin-1"))
    except BaseException:
        writer.close()
        raise


# -- sending --------------------------------------------------------------------------------------------
def mjpeg_part(frame: bytes) -> bytes:
    """One part of the MJPEG streams this server sends (boundary :data:`BOUNDARY`)."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
    return head.encode("ascii") + frame + b"\r\n"


def pack_frame(camera: str, frame: bytes) -> bytes:
    """One frame of ``/api/previews.bin``: u16 name length, u32 frame length (big-endian), name, JPEG."""
    name = camera.encode("utf-8")
    return struct.pack(">HI", len(name), len(frame)) + name + frame


# -- the hub -------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Subscription:
    """A viewer of one camera, of some cameras, or of every camera (``keys`` None).

    Frames are kept latest-first per camera: :meth:`next` returns what arrived since the last call.
    """

    hub: PreviewHub
    keys: frozenset[str] | None
    latest: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def offer(self, key: str, seq: int, frame: bytes) -> None:
        """Hand over frame number ``seq`` of camera ``key`` (replacing one not taken yet)."""
        self.latest[key] = (seq, frame)
        self.wake.set()

    async def next(self) -> list[tuple[str, int, bytes]]:
        """Wait for frames; an empty list when the hub closes."""
        while not self.latest and not self.closed and not self.hub.closed:
            self.wake.clear()
            await self.wake.wait()
        frames = [(key, seq, frame) for key, (seq, frame) in self.latest.items()]
        self.latest.clear()
        self.hub.count_sent(frames)
        return frames

    def close(self) -> None:
        """Stop viewing (the hub closes node connections nobody watches any more)."""
        if not self.closed:
            self.closed = True
            self.wake.set()
            self.hub._unsubscribe(self)


class _Upstream:
    """One node connection, and the counters of one camera's previews."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.state = "idle"
        self.error = ""
        self.seq = 0
        self.latest: bytes | None = None  # the newest frame while the node connection streams
        self.frames_in = 0
        self.frames_out = 0
        self.connects = 0

    def stats(self) -> dict[str, Any]:
        """The counters, as ``PreviewHub.stats`` gives them."""
        return {
            "state": self.state,
            "viewers": len(self.subscribers),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "connects": self.connects,
            "error": self.error,
        }


class PreviewHub:
    """Relays the cameras' MJPEG previews to any number of viewers, one node connection per camera.

    Everything but :meth:`stats` and :meth:`wait_for` runs on the event loop of the web server.

    Parameters
    ----------
    resolve : callable
        ``resolve(camera)`` returns the preview URL of a camera (its node's MJPEG stream), or
        None when the camera is unknown or has no preview; called on the event loop, must be quick.
    connect_timeout : float
        Seconds to connect to a node and read its response head.
    read_timeout : float
        Seconds without a byte from a node after which its connection is dropped and made again.
    """

    def __init__(
        self,
        resolve: Callable[[str], str | None],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
    ) -> None:
        self._resolve = resolve
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._upstreams: dict[str, _Upstream] = {}
        self._followers: set[Subscription] = set()  # viewers of every camera
        self._cameras: set[str] = set()
        self._cond = threading.Condition()  # for wait_for(), from other threads
        self.closed = False

    # -- viewers --------------------------------------------------------------------------------------
    def subscribe(self, keys: Iterable[str] | None) -> Subscription:
        """Start viewing ``keys`` (None: every camera, also those arriving later)."""
        chosen = None if keys is None else frozenset(keys)
        sub = Subscription(self, chosen)
        if self.closed:
            sub.closed = True
            return sub
        targets = self._cameras if chosen is None else chosen
        if chosen is None:
            self._followers.add(sub)
        for key in targets:
            self._attach(key, sub)
        self._changed()
        return sub

    def _attach(self, key: str, sub: Subscription) -> None:
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = self._upstreams[key] = _Upstream(key)
        upstream.subscribers.add(sub)
        if upstream.latest is not None:  # a new viewer sees the current picture at once
            sub.offer(key, upstream.seq, upstream.latest)
        self._run(upstream)

    def _run(self, upstream: _Upstream) -> None:
        if upstream.task is None or upstream.task.done():
            upstream.task = asyncio.get_running_loop().create_task(
                self._pump(upstream), name=f"preview-{upstream.key}"
            )

    def _unsubscribe(self, sub: Subscription) -> None:
        self._followers.discard(sub)
        for upstream in self._upstreams.values():
            if sub in upstream.subscribers:
                upstream.subscribers.discard(sub)
                self._stop_if_unwatched(upstream)
        self._changed()

    def _stop_if_unwatched(self, upstream: _Upstream) -> None:
        if not upstream.subscribers and upstream.task is not None:
            upstream.task.cancel()
            upstream.task = None
            upstream.state, upstream.latest = "idle", None
            self._changed()

    def set_cameras(self, keys: Iterable[str]) -> None:
        """The cameras of the rig now: viewers of every camera follow arrivals and departures."""
        now = set(keys)
        added, gone = now - self._cameras, self._cameras - now
        self._cameras = now
        for key in added:
            for sub in self._followers:
                self._attach(key, sub)
        for key in gone:
            upstream = self._upstreams.get(key)
            if upstream is not None:
                upstream.subscribers -= self._followers
                self._stop_if_unwatched(upstream)
        if added or gone:
            self._changed()

    def count_sent(self, frames: list[tuple[str, int, bytes]]) -> None:
        """Count frames handed to a viewer (called by :meth:`Subscription.next`)."""
        for key, _seq, _frame in frames:
            upstream = self._upstreams.get(key)
            if upstream is not None:
                upstream.frames_out += 1
        if frames:
            self._changed()

    # -- node connections -----------------------------------------------------------------------------
    async def _pump(self, upstream: _Upstream) -> None:
        me = asyncio.current_task()

        def current() -> bool:  # a relay that was stopped and replaced must not act any more
            return upstream.task is me and bool(upstream.subscribers) and not self.closed

        pause = _RETRY_FIRST
        while current():
            url = self._resolve(upstream.key)
            if not url:
                self._set_state(upstream, "unavailable", "the camera has no preview stream")
                await asyncio.sleep(_RETRY_MAX)  # bounded retry: the camera may come back
                continue
            self._set_state(upstream, "connecting", upstream.error)
            before = upstream.frames_in
            try:
                await self._stream(upstream, url)
                reason = "the node ended the stream"
            except RelayError as exc:
                reason = str(exc)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not current():
                return
            upstream.latest = None  # never hand out a frame of a connection that is gone
            if upstream.frames_in > before:  # it worked for a while: try again soon
                pause = _RETRY_FIRST
            logger.debug("preview of %s: %s; retrying in %.2f s", upstream.key, reason, pause)
            self._set_state(upstream, "retrying", reason)
            await asyncio.sleep(pause)  # bounded back-off before connecting again
            pause = min(_RETRY_MAX, pause * 2)
        if upstream.task is me:
            upstream.latest = None
            self._set_state(upstream, "idle", upstream.error)

    async def _stream(self, upstream: _Upstream, url: str) -> None:
        reader, writer, parser = await open_mjpeg(url, self.connect_timeout)
        me = asyncio.current_task()
        upstream.connects += 1
        self._set_state(upstream, "streaming", "")
        try:
            while not parser.ended:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that arrives with the data, and a cancelled relay would go on delivering.
                    async with asyncio.timeout(self.read_timeout):
                        data = await reader.read(256 * 1024)
                except TimeoutError:
                    raise RelayError(f"no data from {url} for {self.read_timeout:g} s") from None
                if not data or upstream.task is not me:  # the node ended, or this relay was replaced
                    return
                for frame in parser.feed(data):
                    self._deliver(upstream, frame)
        finally:
            writer.close()  # the node sees the end of the connection and stops producing

    def _deliver(self, upstream: _Upstream, frame: bytes) -> None:
        upstream.seq += 1
        upstream.frames_in += 1
        upstream.latest = frame
        for sub in list(upstream.subscribers):
            sub.offer(upstream.key, upstream.seq, frame)
        self._changed()

    def _set_state(self, upstream: _Upstream, state: str, error: str) -> None:
        upstream.state, upstream.error = state, error
        self._changed()

    # -- inspection -----------------------------------------------------------------------------------
    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Camera -> ``state``, ``viewers``, ``frames_in`` (from the node), ``frames_out`` (to viewers)...

        Safe to call from any thread (the values are a snapshot, not taken atomically).
        """
        return {key: upstream.stats() for key, upstream in list(self._upstreams.items())}

    def wait_for(self, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float) -> bool:
        """Wait, from another thread, until ``predicate(stats())`` holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.stats()), timeout)

    async def close(self) -> None:
        """Stop every node connection and end every viewer's stream."""
        self.closed = True
        subs = set(self._followers)
        tasks = []
        for upstream in self._upstreams.values():
            subs |= upstream.subscribers
            if upstream.task is not None:
                upstream.task.cancel()
                tasks.append(upstream.task)
        for sub in subs:
            sub.wake.set()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._changed()
