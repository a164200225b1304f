"""Follow a device registry from another process: :func:`list_devices` and :class:`RegistryWatcher`.

Both rely on our registry's extension (``LIST`` and the events ``PUB`` socket, see
:mod:`plantimager.commons.deviceregistry`); an upstream registry answers ``LIST`` with ``UNSUPPORTED``.

How the watcher keeps an exact copy of the registry:

1. ``LIST`` once to learn the events port, subscribe to it, then ``LIST`` again: the second answer is the
   snapshot, taken after the subscription was sent, with the sequence number of the last change it includes.
2. Apply every ``DEVICE_ADDED`` / ``DEVICE_REMOVED`` whose sequence number is the next one; ignore older ones.
3. A missing number, a ``HEARTBEAT`` announcing a later number, another ``registry_id`` (the registry
   restarted) or a silence longer than three heartbeats means the copy may be stale: ``LIST`` again (retrying
   with a growing pause while the registry is away), compare, and report what was added and removed.
4. A restarted registry knows no device until each registers again, on its next heartbeat: a device it does
   not list yet is kept for ``rejoin_grace`` seconds, and reported gone only if it has not come back by then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ..errors import ProtocolError, RegistryError
from ..rpc.sockets import make_socket
from ..rpc.wire import decode_object
from ..security import KeyRing
from .message import DeviceInfo, EventType, client_options, make_message, normalise_url, payload_of, request

__all__ = ["REJOIN_GRACE_S", "RegistryWatcher", "list_devices"]

logger = logging.getLogger(__name__)

#: Slice of every wait of the watcher thread, in seconds (bounds how long stop() takes).
_TICK = 0.1
#: Pauses between two LIST attempts while the registry does not answer, in seconds.
_RETRY_FIRST = 0.05
_RETRY_MAX = 2.0
#: Shortest silence of the events socket taken as a sign that the registry is gone, in seconds.
_MIN_SILENCE = 0.3
#: Most events handled in one pass before the loop checks for stop() again.
_MAX_BATCH = 1000
#: After a registry restart, how long a device it does not list is kept, in seconds: upstream registries
#: forget a device that has not checked in for 20 s, so a live device checks in (and registers again) sooner.
REJOIN_GRACE_S = 20.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    devices: dict[str, DeviceInfo]
    seq: int
    events_port: int
    registry_id: str
    heartbeat_interval: float


def _device_of(item: Any) -> DeviceInfo | None:
    if not isinstance(item, dict):
        return None
    fields = (item.get("name"), item.get("device_type"), item.get("addr"), item.get("public_key", ""))
    if not all(isinstance(f, str) for f in fields):
        return None
    return DeviceInfo(*fields)


def _fetch(
    context: zmq.Context,
    url: str,
    device_type: str | None,
    timeout: int,
    stop: threading.Event | None = None,
    keys: KeyRing | None = None,
) -> _Snapshot | None:
    """One ``LIST`` round trip; None if no reply in time. Raises RegistryError on a refusal or bad reply."""
    payload = {} if device_type is None else {"device_type": device_type}
    try:
        message = make_message(EventType.LIST, **payload)
        reply = request(context, url, message, timeout, stop=stop, keys=keys)
    except ProtocolError as exc:
        raise RegistryError(f"registry at {url} sent a malformed reply to LIST: {exc}") from None
    if reply is None:
        return None
    if reply.get("event") == EventType.UNSUPPORTED:
        raise RegistryError(f"registry at {url} does not support LIST (an upstream registry?)")
    refusal = payload_of(reply, EventType.ERROR)
    if refusal is not None:
        raise RegistryError(f"registry at {url} refused LIST: {refusal.get('error')}")
    ack = payload_of(reply, EventType.LIST_ACK)
    items = ack.get("devices") if ack is not None else None
    seq = ack.get("seq") if ack is not None else None
    port = ack.get("events_port") if ack is not None else None
    if not isinstance(items, list) or not isinstance(seq, int) or not isinstance(port, int):
        raise RegistryError(f"registry at {url} sent an unexpected reply to LIST: {str(reply)[:120]}")
    devices: dict[str, DeviceInfo] = {}
    for item in items:
        info = _device_of(item)
        if info is None:
            raise RegistryError(f"registry at {url} listed a malformed device: {str(item)[:120]}")
        devices[info.name] = info
    interval = ack.get("heartbeat_interval")
    interval = float(interval) if isinstance(interval, (int, float)) and interval > 0 else 1.0
    return _Snapshot(devices, seq, port, str(ack.get("registry_id", "")), interval)


def list_devices(
    context: zmq.Context,
    registry_url: str,
    *,
    device_type: str | None = None,
    timeout: int = 2000,
    keys: KeyRing | None = None,
) -> list[DeviceInfo]:
    """Ask the registry at ``registry_url`` which devices it holds.

    Parameters
    ----------
    context : zmq.Context
        Context for the short-lived request socket.
    registry_url : str
        Address of the registry, e.g. ``"tcp://10.10.10.1:5555"``.
    device_type : str, optional
        Only list devices of this type.
    timeout : int
        Longest wait for the reply, in milliseconds.
    keys : KeyRing, optional
        Ask over CurveZMQ with this host's keys (the registry's key is ``keys.registry_key``).

    Returns
    -------
    list of DeviceInfo
        The devices, sorted by name.

    Raises
    ------
    RegistryError
        If no reply came in time, or the registry does not support ``LIST``, or the reply is malformed.
    """
    url = normalise_url(registry_url)
    snapshot = _fetch(context, url, device_type, timeout, keys=keys)
    if snapshot is None:
        raise RegistryError(f"registry at {url} did not answer LIST within {timeout} ms")
    return sorted(snapshot.devices.values(), key=lambda d: d.name)


class RegistryWatcher:
    """Keep a live copy of a registry's devices, and report arrivals and departures.

    The watcher owns one thread and its sockets. Callbacks run on that thread, in the order of the changes;
    an exception in one is logged and ignored. While the registry is away the last known devices are kept
    (:attr:`connected` is False) and the watcher keeps trying; when it is back (or has restarted, possibly
    with another events port) the watcher lists it again and reports the differences.

    Parameters
    ----------
    context : zmq.Context
        Context for the watcher's sockets.
    registry_url : str
        Address of the registry's request socket, e.g. ``"tcp://10.10.10.1:5555"``; the events socket is
        dialled on the same host.
    device_type : str, optional
        Only follow devices of this type.
    list_timeout : int
        Longest wait for one ``LIST`` reply, in milliseconds.
    keys : KeyRing, optional
        Follow a secured registry with this host's keys (both the requests and the events socket).
    rejoin_grace : float
        After the registry restarted, how long a device it does not list yet is still taken as there
        (time for it to register again), in seconds.
    """

    def __init__(
        self,
        context: zmq.Context,
        registry_url: str,
        *,
        device_type: str | None = None,
        list_timeout: int = 1000,
        keys: KeyRing | None = None,
        rejoin_grace: float = REJOIN_GRACE_S,
    ) -> None:
        self.context = context
        self.keys = keys
        self.registry_url = normalise_url(registry_url)
        self.device_type = device_type
        self.list_timeout = list_timeout
        self.rejoin_grace = rejoin_grace
        self._cond = threading.Condition()
        self._devices: dict[str, DeviceInfo] = {}
        self._connected = False
        self._added: list[Callable[[DeviceInfo], Any]] = []
        self._removed: list[Callable[[DeviceInfo], Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="RegistryWatcher", daemon=True)
        # State owned by the thread.
        self._seq = 0
        self._registry_id = ""
        self._interval = 1.0
        self._rejoining: dict[str, float] = {}  # name -> when it is taken as gone (monotonic)

    # ------------------------------------------------------------------ public API

    def start(self) -> RegistryWatcher:
        """Start following the registry; returns the watcher itself."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread, close its sockets and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.ident is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> RegistryWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """True while the registry answers and its events arrive."""
        with self._cond:
            return self._connected

    def devices(self) -> dict[str, DeviceInfo]:
        """Return a snapshot of the known devices.

        Returns
        -------
        dict of str to DeviceInfo
            Device name -> its description; a copy that later changes do not touch.
        """
        with self._cond:
            return dict(self._devices)

    def on_added(self, callback: Callable[[DeviceInfo], Any]) -> Callable[[DeviceInfo], Any]:
        """Call ``callback(device)`` on the watcher thread for every device that appears.

        Returns ``callback``, so the method can be used as a decorator.
        """
        with self._cond:
            self._added.append(callback)
        return callback

    def on_removed(self, callback: Callable[[DeviceInfo], Any]) -> Callable[[DeviceInfo], Any]:
        """Call ``callback(device)`` on the watcher thread for every device that disappears.

        Returns ``callback``, so the method can be used as a decorator.
        """
        with self._cond:
            self._removed.append(callback)
        return callback

    def wait_for(self, predicate: Callable[[dict[str, DeviceInfo]], bool], timeout: float) -> bool:
        """Wait until ``predicate(devices)`` is true, or ``timeout`` seconds have passed.

        Parameters
        ----------
        predicate : callable
            Receives a snapshot of the devices (name -> DeviceInfo) after every change.
        timeout : float
            Longest wait, in seconds.

        Returns
        -------
        bool
            The last value of the predicate.
        """
        with self._cond:
            return self._cond.wait_for(lambda: predicate(dict(self._devices)), timeout)

    # ------------------------------------------------------------------ watcher thread

    def _run(self) -> None:
        sub: zmq.Socket | None = None
        sub_port: int | None = None
        need_list = True
        next_list = 0.0
        retry = _RETRY_FIRST
        last_heard = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._expire(now)
                if need_list and now >= next_list:
                    snapshot = self._list()
                    if snapshot is not None and snapshot.events_port != sub_port:
                        # Subscribe first, then take the snapshot: no change falls between the two.
                        if sub is not None:
                            sub.close(linger=0)
                        sub, sub_port = self._subscribe(snapshot.events_port), snapshot.events_port
                        snapshot = self._list()
                    if snapshot is None or snapshot.events_port != sub_port:
                        self._set_connected(False)
                        next_list, retry = time.monotonic() + retry, min(retry * 2, _RETRY_MAX)
                        continue
                    self._apply_snapshot(snapshot)
                    need_list, retry, last_heard = False, _RETRY_FIRST, time.monotonic()
                if sub is None:
                    self._stop.wait(max(0.0, min(_TICK, next_list - now)))
                    continue
                wait = _TICK if not need_list else max(0.0, min(_TICK, next_list - now))
                if sub.poll(max(1, int(wait * 1000))):
                    last_heard = time.monotonic()
                    for _ in range(_MAX_BATCH):
                        if not self._handle(sub.recv(zmq.NOBLOCK)) and not need_list:
                            need_list, next_list = True, 0.0
                        if not sub.poll(0):
                            break
                elif not need_list and time.monotonic() - last_heard > max(3 * self._interval, _MIN_SILENCE):
                    logger.info("no news from the registry at %s; listing it again", self.registry_url)
                    self._set_connected(False)
                    need_list, next_list = True, 0.0
        except zmq.ContextTerminated:
            logger.debug("registry watcher: context terminated")
        finally:
            if sub is not None:
                sub.close(linger=0)
            self._set_connected(False)

    def _list(self) -> _Snapshot | None:
        try:
            return _fetch(
                self.context, self.registry_url, self.device_type, self.list_timeout, self._stop, self.keys
            )
        except RegistryError as exc:
            logger.warning("%s", exc)
            return None

    def _subscribe(self, events_port: int) -> zmq.Socket:
        scheme_host = self.registry_url.rsplit(":", 1)[0]
        sub = make_socket(
            self.context, zmq.SUB, ipv6="://[" in scheme_host, options=client_options(self.keys)
        )
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"{scheme_host}:{events_port}")
        return sub

    def _handle(self, frame: bytes) -> bool:
        """Apply one event; return False if the copy may be stale and must be listed again."""
        try:
            message = decode_object(frame)
        except ProtocolError as exc:
            logger.warning("ignoring a malformed registry event: %s", exc)
            return True
        payload = message.get("payload")
        event = message.get("event")
        if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
            logger.warning("ignoring a malformed registry event: %.120s", message)
            return True
        seq = payload["seq"]
        if payload.get("registry_id") != self._registry_id:
            return False  # the registry restarted
        if event == EventType.HEARTBEAT:
            return seq <= self._seq  # a later number: some change did not reach us
        if event not in (EventType.DEVICE_ADDED, EventType.DEVICE_REMOVED):
            return True
        if seq <= self._seq:
            return True  # already part of the snapshot
        if seq != self._seq + 1:
            return False  # a change was lost
        self._seq = seq
        info = _device_of(payload)
        if info is None:
            return False
        if self.device_type is not None and info.device_type != self.device_type:
            return True
        self._rejoining.pop(info.name, None)  # the registry knows it again, or saw it go
        if event == EventType.DEVICE_ADDED:
            with self._cond:
                old = self._devices.get(info.name)
                self._devices[info.name] = info
                self._cond.notify_all()
            if old is not None and old != info:
                self._emit(self._removed, old)
            if old != info:
                self._emit(self._added, info)
        else:
            with self._cond:
                old = self._devices.pop(info.name, None)
                self._cond.notify_all()
            if old is not None:
                self._emit(self._removed, old)
        return True

    def _apply_snapshot(self, snapshot: _Snapshot) -> None:
        restarted = snapshot.registry_id != self._registry_id and bool(self._registry_id)
        if restarted:
            logger.info("registry at %s restarted", self.registry_url)
        self._seq, self._registry_id, self._interval = (
            snapshot.seq,
            snapshot.registry_id,
            snapshot.heartbeat_interval,
        )
        with self._cond:
            old = self._devices
            devices = dict(snapshot.devices)
            if restarted:  # what it does not list yet may register again on its next heartbeat
                due = time.monotonic() + self.rejoin_grace
                self._rejoining.update({name: due for name in old if name not in devices})
            for name in list(self._rejoining):
                if name in devices or name not in old:
                    del self._rejoining[name]
                else:
                    devices[name] = old[name]
            self._devices = devices
            self._connected = True
            self._cond.notify_all()
        gone = [d for name, d in old.items() if devices.get(name) != d]
        new = [d for name, d in devices.items() if old.get(name) != d]
        for device in gone:
            self._emit(self._removed, device)
        for device in new:
            self._emit(self._added, device)

    def _expire(self, now: float) -> None:
        """Report gone the devices that did not register again with a restarted registry in time."""
        for name in [name for name, due in self._rejoining.items() if due <= now]:
            del self._rejoining[name]
            with self._cond:
                device = self._devices.pop(name, None)
                self._cond.notify_all()
            if device is not None:
                logger.info("%s did not register again with the restarted registry", name)
                self._emit(self._removed, device)

    def _set_connected(self, value: bool) -> None:
        with self._cond:
            if self._connected != value:
                self._connected = value
                self._cond.notify_all()

    def _emit(self, callbacks: list[Callable[[DeviceInfo], Any]], device: DeviceInfo) -> None:
        with self._cond:
            callbacks = list(callbacks)
        for callback in callbacks:
            try:
                callback(device)
            except Exception:
                logger.exception("registry watcher callback %r failed", callback)
