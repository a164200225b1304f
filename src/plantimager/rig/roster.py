"""The live list of camera nodes and their cameras, kept in step with the device registry.

A :class:`~plantimager.commons.registry.watcher.RegistryWatcher` follows the registry's devices of type
``camera``; the roster's own thread reconciles that list with the nodes it is connected to: it connects
to new devices (on a worker thread, so one slow node never delays the others), drops those that left
or moved to another address, retries devices it could not reach with a growing pause, and pings idle
nodes now and then to keep their round-trip times fresh and notice nodes that stopped answering.
Every change is reported as a :class:`~plantimager.rig.record.RigEvent`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import zmq

from plantimager.commons.errors import InterfaceError, RemoteError
from plantimager.commons.registry import DeviceInfo
from plantimager.commons.registry.watcher import RegistryWatcher
from plantimager.commons.security import KeyRing

from .node import CallLimits, RigNode, describe_error
from .record import CameraInfo, NodeInfo, RigEvent

__all__ = ["Roster"]

logger = logging.getLogger(__name__)

#: Longest sleep of the roster's thread, seconds (bounds how late it notices the registry's state).
_TICK = 0.1
_RETRY_FIRST = 0.25
_RETRY_MAX = 5.0
#: Pause before trying again a device that answered but is not a camera node, seconds.
_RETRY_UNUSABLE = 30.0
#: A node whose newest round trip is older than this is pinged even when it is in contact (a
#: busy node is never silent, and the capture lead is chosen from fresh round trips), seconds.
RTT_REFRESH_S = 5.0


@dataclass(slots=True)
class _Attempt:
    device: DeviceInfo
    next_try: float = 0.0
    tries: int = 0
    running: bool = False
    error: str = ""


class Roster:
    """The camera nodes of a registry, connected and kept up to date. Thread-safe.

    Parameters
    ----------
    context : zmq.Context
        Context of the watcher's and clients' sockets.
    registry_url : str
        The registry, e.g. ``tcp://127.0.0.1:5555``.
    limits : CallLimits
        Longest waits of calls to nodes.
    executor : concurrent.futures.Executor
        Runs connections, health pings and closings (owned by the caller, which shuts it down
        after :meth:`stop`).
    health_interval : float
        Seconds of silence after which an idle node is pinged; a node in contact is also pinged
        when its newest round trip is older than ``RTT_REFRESH_S``, one node at a time. No node is
        pinged twice within ``health_interval``.
    keys : KeyRing, optional
        Follow a secured registry and reach its nodes over CurveZMQ with these keys.
    """

    def __init__(
        self,
        context: zmq.Context,
        registry_url: str,
        *,
        limits: CallLimits,
        executor: Executor,
        health_interval: float = 2.0,
        keys: KeyRing | None = None,
    ) -> None:
        self.context = context
        self.keys = keys
        self.limits = limits
        self.health_interval = health_interval
        self._executor = executor
        self._watcher = RegistryWatcher(
            context, registry_url, device_type="camera", list_timeout=limits.connect, keys=keys
        )
        self.registry_url = self._watcher.registry_url
        self._cond = threading.Condition()
        self._nodes: dict[str, RigNode] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._probing: set[str] = set()
        self._probed_at: dict[str, float] = {}
        self._listeners: list[Callable[[RigEvent], Any]] = []
        self._dirty = True
        self._connected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rig-roster", daemon=True)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start following the registry."""
        self._watcher.on_added(self._poke)
        self._watcher.on_removed(self._poke)
        self._watcher.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following the registry and close every node's client (bounded waits)."""
        self._stopping.set()
        self._poke()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._watcher.stop()
        with self._cond:
            nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.close()

    # -- queries ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the registry answers."""
        return self._watcher.connected

    def node(self, name: str) -> RigNode | None:
        """The connected node of that registry name, or None."""
        with self._cond:
            return self._nodes.get(name)

    def ready_nodes(self) -> dict[str, RigNode]:
        """The connected nodes, by name."""
        with self._cond:
            return dict(self._nodes)

    def cameras(self) -> list[CameraInfo]:
        """Every camera of every connected node, by node name then camera index."""
        with self._cond:
            nodes = sorted(self._nodes.values(), key=lambda n: n.name)
        return [cam for node in nodes for cam in node.cameras()]

    def nodes(self) -> list[NodeInfo]:
        """Every camera node of the registry: connected ones, and those being connected or failing."""
        with self._cond:
            infos = [node.info() for node in self._nodes.values()]
            for name, attempt in self._attempts.items():
                state = "failed" if attempt.error else "connecting"
                infos.append(
                    NodeInfo(name=name, address=attempt.device.addr, state=state, error=attempt.error)
                )
        return sorted(infos, key=lambda n: n.name)

    def unconnected(self) -> dict[str, str]:
        """Node name -> why, for the camera nodes of the registry the rig tried and failed to connect to."""
        with self._cond:
            return {name: f"not connected: {a.error}" for name, a in self._attempts.items() if a.error}

    def settled(self) -> bool:
        """Whether the registry answered and every node it lists was tried at least once."""
        with self._cond:
            return self._connected and all(a.tries > 0 and not a.running for a in self._attempts.values())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true (re-checked after every change), at most ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def on_event(self, callback: Callable[[RigEvent], Any]) -> Callable[[RigEvent], Any]:
        """Call ``callback(event)`` for every change; returns ``callback`` (usable as a decorator).

        Callbacks run on the roster's threads; an exception is logged and ignored.
        """
        with self._cond:
            self._listeners.append(callback)
        return callback

    def off_event(self, callback: Callable[[RigEvent], Any]) -> bool:
        """Stop calling ``callback``; False if it was not registered."""
        with self._cond:
            try:
                self._listeners.remove(callback)
            except ValueError:
                return False
        return True

    # -- the roster thread -----------------------------------------------------------------------
    def _poke(self, *_args: Any) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping.is_set(), _TICK)
                self._dirty = False
            if self._stopping.is_set():
                return
            try:
                self._reconcile()
            except Exception:  # one bad pass must not end the live list
                logger.exception("rig roster: reconciling with the registry failed")

    def _reconcile(self) -> None:
        connected = self._watcher.connected
        desired = self._watcher.devices()
        now = time.monotonic()
        events: list[RigEvent] = []
        gone: list[RigNode] = []
        with self._cond:
            if connected != self._connected:
                self._connected = connected
                events.append(RigEvent("registry_connected" if connected else "registry_lost", at=now))
            for name, node in list(self._nodes.items()):
                if desired.get(name) != node.device:
                    del self._nodes[name]
                    gone.append(node)
            for name, attempt in list(self._attempts.items()):
                if desired.get(name) != attempt.device and not attempt.running:
                    del self._attempts[name]
            for name, device in desired.items():
                if name in self._nodes:
                    continue
                attempt = self._attempts.get(name)
                if attempt is None or (attempt.device != device and not attempt.running):
                    attempt = self._attempts[name] = _Attempt(device)
                if not attempt.running and now >= attempt.next_try:
                    attempt.running = True
                    self._executor.submit(self._connect, attempt)
            idle = [
                node
                for node in self._nodes.values()
                if node.name not in self._probing
                and not node.busy
                and now - self._probed_at.get(node.name, 0.0) > self.health_interval
            ]
            probes = [node for node in idle if now - node.last_contact > self.health_interval]
            stale = [node for node in idle if node not in probes and _rtt_stale(node)]
            if stale and not self._probing:
                # One round trip refreshed at a time, the stalest first: never a burst of pings
                # (nor of pool threads) when every node of a busy rig goes stale at once.
                probes.append(max(stale, key=_rtt_age))
            for node in probes:
                self._probing.add(node.name)
                self._probed_at[node.name] = now
            self._cond.notify_all()
        for node in gone:
            events.extend(RigEvent("camera_removed", node.name, cam.key, at=now) for cam in node.cameras())
            events.append(RigEvent("node_removed", node.name, detail=node.address, at=now))
            self._executor.submit(node.close)
        for node in probes:
            self._executor.submit(self._probe, node)
        self._emit(events)

    def _connect(self, attempt: _Attempt) -> None:
        device = attempt.device
        try:
            node = RigNode.connect(self.context, device, self.limits, keys=self.keys)
        except Exception as exc:
            unusable = isinstance(exc, InterfaceError) and not isinstance(exc, RemoteError)
            reason = describe_error(exc)
            with self._cond:
                attempt.tries += 1
                attempt.running = False
                first = attempt.error != reason
                attempt.error = reason
                pause = (
                    _RETRY_UNUSABLE if unusable else min(_RETRY_MAX, _RETRY_FIRST * 2 ** (attempt.tries - 1))
                )
                attempt.next_try = time.monotonic() + pause
                self._dirty = True
                self._cond.notify_all()
            if first:
                logger.warning("camera node %s at %s: %s", device.name, device.addr, reason)
                self._emit([RigEvent("node_failed", device.name, detail=reason, at=time.monotonic())])
            return
        with self._cond:
            keep = (
                not self._stopping.is_set()
                and self._attempts.get(device.name) is attempt
                and self._watcher.devices().get(device.name) == device
            )
            if keep:
                node._on_state = self._node_state
                self._nodes[device.name] = node
                del self._attempts[device.name]
            else:
                attempt.running = False
            self._dirty = True
            self._cond.notify_all()
        if not keep:
            node.close()
            return
        now = time.monotonic()
        logger.debug(
            "camera node %s (%s) at %s: %d camera(s)",
            node.name,
            node.node_id,
            node.address,
            len(node.cameras()),
        )
        events = [RigEvent("node_added", node.name, detail=node.address, at=now)]
        events.extend(RigEvent("camera_added", node.name, cam.key, at=now) for cam in node.cameras())
        flag = node.info().clock_flag
        if flag:
            events.append(RigEvent("node_clock", node.name, detail=flag, at=now))
        self._emit(events)

    def _probe(self, node: RigNode) -> None:
        try:
            if node.check_settings():  # changed by another controller (or this one)
                self._emit([RigEvent("camera_changed", node.name, detail="settings", at=time.monotonic())])
                self._poke()  # wakes wait_for()
        except Exception as exc:
            logger.debug("health ping of %s failed: %s", node.name, exc)
        finally:
            with self._cond:
                self._probing.discard(node.name)

    def _node_state(self, node: RigNode, state: str, reason: str) -> None:
        if state == "clock":
            detail = reason or "clock back within the skew budget"
            self._emit([RigEvent("node_clock", node.name, detail=detail, at=time.monotonic())])
            return
        kind = "node_ready" if state == "ready" else "node_unreachable"
        self._emit([RigEvent(kind, node.name, detail=reason, at=time.monotonic())])
        self._poke()

    def _emit(self, events: list[RigEvent]) -> None:
        if not events:
            return
        with self._cond:
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("rig event listener %r failed", listener)


def _rtt_age(node: RigNode) -> float:
    """Seconds since the node's newest round trip (infinite when it has none)."""
    age = node.round_trips.age()
    return float("inf") if age is None else age


def _rtt_stale(node: RigNode) -> bool:
    """True if the node's newest round trip is older than ``RTT_REFRESH_S`` (or it has none)."""
    return _rtt_age(node) > RTT_REFRESH_S
