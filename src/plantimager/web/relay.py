"""Camera previews relayed through the controller, so a browser only needs to reach the web server.

Each camera node serves its previews as MJPEG over plain HTTP (``multipart/x-mixed-replace``). For
every camera somebody watches, :class:`PreviewHub` keeps **one** connection to the node (a raw
asyncio socket: the node speaks HTTP/1.0) and hands every new frame to all its viewers. A viewer
that falls behind skips frames rather than queueing them; the last viewer leaving closes the
connection to the node, which then stops producing frames.

A secured rig's nodes serve MJPEG on their own loopback only: the hub then polls each watched camera's
newest frame over the rig's encrypted RPC connection instead (``fetch``), at the preview frame rate.

Viewers come in two kinds:

* ``/cameras/{camera}/preview.mjpg``: the camera's stream, re-served as MJPEG (an ``<img>`` plays it);
* ``/api/previews.bin``: the frames of every camera on one connection (see
  :func:`~plantimager.web.mjpegstream.pack_frame`). A
  browser opens at most six HTTP/1.1 connections to one server, so one MJPEG ``<img>`` per card
  would stall every camera beyond the fifth; the page reads this single stream instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .mjpegstream import RelayError, open_mjpeg

__all__ = ["PreviewHub", "Subscription"]

logger = logging.getLogger(__name__)

_RETRY_FIRST = 0.25
_RETRY_MAX = 2.0
#: Seconds between two polls of a camera's newest frame over RPC (the nodes make at most 15 per second).
POLL_INTERVAL = 1 / 15


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
        self.remote_seq = 0  # number of the node's frame last fetched over RPC

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
    fetch : callable, optional
        ``fetch(camera, after)`` returns ``(number, jpeg or None)``, the camera's newest frame fetched
        over RPC (blocking; run on a worker thread). Given, it replaces the MJPEG connections.
    """

    def __init__(
        self,
        resolve: Callable[[str], str | None],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        fetch: Callable[[str, int], tuple[int, bytes | None]] | None = None,
    ) -> None:
        self._resolve = resolve
        self._fetch = fetch
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
            url = "rpc" if self._fetch is not None else self._resolve(upstream.key)
            if not url:
                self._set_state(upstream, "unavailable", "the camera has no preview stream")
                await asyncio.sleep(_RETRY_MAX)  # bounded retry: the camera may come back
                continue
            self._set_state(upstream, "connecting", upstream.error)
            before = upstream.frames_in
            try:
                await (self._poll(upstream) if self._fetch is not None else self._stream(upstream, url))
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

    async def _poll(self, upstream: _Upstream) -> None:
        """Fetch the camera's newest frame over RPC at the preview rate while this relay is current."""
        assert self._fetch is not None
        me = asyncio.current_task()
        upstream.connects += 1
        self._set_state(upstream, "streaming", "")
        while upstream.task is me and upstream.subscribers and not self.closed:
            started = asyncio.get_running_loop().time()
            try:
                seq, frame = await asyncio.to_thread(self._fetch, upstream.key, upstream.remote_seq)
            except Exception as exc:  # the node or the rig refused or did not answer: retry
                raise RelayError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
            if upstream.task is not me:
                return
            if frame is not None and seq != upstream.remote_seq:
                upstream.remote_seq = seq
                self._deliver(upstream, frame)
            await asyncio.sleep(max(0.0, POLL_INTERVAL - (asyncio.get_running_loop().time() - started)))

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
