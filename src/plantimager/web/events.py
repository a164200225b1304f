"""Server-sent events: the live camera list and what the rig is doing, pushed to every open page.

``GET /api/events`` is a ``text/event-stream``. Each message has an ``event:`` name and one line of
JSON ``data:``:

``cameras``
    The live rig (see :meth:`WebController.snapshot`): sent on connecting, then whenever it changes.
    A rig event (arrival, departure, a node that stops answering) triggers a new one at once; the
    list is also compared every ``refresh`` seconds (round trips, a registry that went away).
``rig``
    One event of the rig (``kind``, ``node``, ``camera``, ``detail``), for the page's log.
``capture``
    The outcome of a capture (see ``POST /api/capture``), whoever asked for it.
``download``
    The state of the download: ``state`` (``idle``, ``running``, ``done``, ``failed``), ``done``,
    ``total``, ``file``, ``bytes`` and, at the end, ``result`` or ``error``.
``shutdown``
    The outcome of Shutdown All.

A comment line is sent every ``keepalive`` seconds so that proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from plantimager.rig import RigEvent

from .controller import WebController

__all__ = ["EventHub", "to_json"]

logger = logging.getLogger(__name__)

#: Messages kept for a page that reads slowly; older ones are dropped (the next snapshot repairs).
_BACKLOG = 256


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON that browsers parse (non-finite numbers become null, other values text)."""
    return json.dumps(_finite(value), separators=(",", ":"), default=str, allow_nan=False)


class _Listener:
    def __init__(self) -> None:
        self.queue: collections.deque[bytes] = collections.deque(maxlen=_BACKLOG)
        self.wake = asyncio.Event()


class EventHub:
    """Pushes the live rig and the app's activity to every page, as server-sent events.

    Parameters
    ----------
    controller : WebController
        Where snapshots of the rig come from.
    on_snapshot : callable, optional
        Called on the event loop with every new snapshot (the preview hub follows the cameras).
    refresh : float
        Seconds between two comparisons of the live rig when nothing was signalled.
    keepalive : float
        Seconds between two comment lines on an idle stream.
    """

    def __init__(
        self,
        controller: WebController,
        *,
        on_snapshot: Callable[[dict[str, Any]], Any] | None = None,
        refresh: float = 2.0,
        keepalive: float = 10.0,
    ) -> None:
        self.controller = controller
        self.refresh = refresh
        self.keepalive = keepalive
        self._on_snapshot = on_snapshot
        self._listeners: set[_Listener] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.snapshot: dict[str, Any] | None = None
        self.state: dict[str, dict[str, Any]] = {}  # last message of each kind, sent to new pages
        self.closed = False

    # -- life cycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Take the first snapshot and start following the rig (on the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        self.controller.rig.on_event(self._on_rig_event)
        await self._refresh()
        self._task = self._loop.create_task(self._run(), name="web-events")

    async def close(self) -> None:
        """End every event stream and stop following the rig."""
        self.closed = True
        self.controller.rig.off_event(self._on_rig_event)
        for listener in self._listeners:
            listener.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the rig's side -------------------------------------------------------------------------------
    def _on_rig_event(self, event: RigEvent) -> None:
        """Called on the rig's threads: hand the event to the loop, never block."""
        loop = self._loop
        if self.closed or loop is None or loop.is_closed():
            return  # an event delivered while the app stops
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._rig_event, event)

    def _rig_event(self, event: RigEvent) -> None:
        data = event.as_dict()
        data.pop("at", None)
        self.publish("rig", data, remember=False)
        if self._poke is not None:
            self._poke.set()

    async def _run(self) -> None:
        assert self._poke is not None
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self._refresh()
            except Exception:  # one failed snapshot must not end the live list
                logger.exception("taking a snapshot of the rig failed")

    async def _refresh(self) -> None:
        snapshot = await run_in_threadpool(self.controller.snapshot)
        if snapshot != self.snapshot:
            self.snapshot = snapshot
            if self._on_snapshot is not None:
                self._on_snapshot(snapshot)
            self.publish("cameras", snapshot, remember=False)

    def poke(self) -> None:
        """Take a new snapshot now (on the event loop)."""
        if self._poke is not None:
            self._poke.set()

    # -- the pages' side ------------------------------------------------------------------------------
    def publish(self, kind: str, data: dict[str, Any], *, remember: bool = True) -> None:
        """Send an event to every page (on the event loop); ``remember`` it for pages opened later."""
        if remember:
            self.state[kind] = data
        message = f"id: {next(self._ids)}\nevent: {kind}\ndata: {to_json(data)}\n\n".encode()
        for listener in self._listeners:
            listener.queue.append(message)
            listener.wake.set()

    def publish_threadsafe(self, kind: str, data: dict[str, Any], *, remember: bool = True) -> None:
        """:meth:`publish` from another thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self.closed:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: self.publish(kind, data, remember=remember))

    async def stream(self) -> AsyncIterator[bytes]:
        """The event stream of one page: the current state first, then every change."""
        listener = _Listener()
        self._listeners.add(listener)
        try:
            yield b"retry: 1000\n\n"
            if self.snapshot is not None:
                yield f"event: cameras\ndata: {to_json(self.snapshot)}\n\n".encode()
            for kind, data in list(self.state.items()):
                yield f"event: {kind}\ndata: {to_json(data)}\n\n".encode()
            while not self.closed:
                if not listener.queue:
                    listener.wake.clear()
                    try:
                        async with asyncio.timeout(self.keepalive):
                            await listener.wake.wait()
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                while listener.queue:
                    yield listener.queue.popleft()
        finally:
            self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        """Open event streams."""
        return len(self._listeners)
