"""The device registry: devices announce themselves, controllers find them.

A :class:`DeviceRegistry` is a thread that owns a ZeroMQ ``REP`` socket and speaks the upstream plantimager
registry protocol. Every message is one frame holding a JSON object ``{"event": <str>, "payload": {...}}``:

================  ==================  ====================================================================
event             direction           payload
================  ==================  ====================================================================
``REGISTER``      device -> registry  ``device_type``, ``addr``, ``name`` (str); ``overwrite`` (bool,
                                      optional, default false); ``alive_timeout`` (seconds, optional,
                                      our extension)
``REGISTER_ACK``  registry -> device  ``name`` (accepted name), ``uuid`` (UUID1 text)
``UNREGISTER``    device -> registry  ``uuid``
``CHECK_ALIVE``   device -> registry  ``uuid``; ``alive_timeout`` (seconds, optional, default 20)
``ACK``           registry -> device  ``req_event``, ``success`` (true iff the uuid was known)
``UNSUPPORTED``   registry -> device  ``req_event`` (the event that was not recognised)
================  ==================  ====================================================================

Extensions (an upstream device never sends them, so it never sees them):

* ``LIST`` -> ``LIST_ACK``: the current devices, the change sequence number, and where change events are
  published (see :func:`list_devices` and :class:`RegistryWatcher`);
* a ``PUB`` socket that publishes ``DEVICE_ADDED`` / ``DEVICE_REMOVED`` the moment the registry changes, and a
  periodic ``HEARTBEAT`` carrying the current sequence number;
* ``alive_timeout`` in ``REGISTER``: the first expiry honours the device's own timeout;
* ``ERROR``: the reply to a malformed request, naming what was wrong.

Naming follows upstream: a taken name ``cam`` becomes ``cam-1``, ``cam-2``... With an empty proposed name the
registry uses the device type as the base in the same way (``camera``, ``camera-1``, ``camera-2``), where
upstream started at ``camera-0``.

Secured (``keys``), the registry speaks CurveZMQ on both sockets: only trusted keys connect, a ``LIST`` and
the events need a viewer, registering needs a device (or operator) key, and each device is listed with the
public key it registered with (``public_key``), which controllers use to reach it securely.

The device side (:mod:`.device`, :mod:`.link`) and the listing side (:mod:`.watcher`) live beside this module;
what they and the registry say to each other is in :mod:`.message`; the table of devices is in :mod:`.table`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from .. import watchdog as _watchdog
from ..errors import ProtocolError, RegistryError, ValidationError
from ..rpc.guard import Gate
from ..rpc.refusals import RefusalLog
from ..rpc.sockets import SocketOptions, make_socket, release_endpoint
from ..rpc.wire import decode_object, encode
from ..security import KeyRing, Role
from .message import (
    ALIVE_TIMEOUT,
    DEFAULT_REGISTRY_PORT,
    HEARTBEAT_INTERVAL,
    MAX_POLL,
    BadRequestError,
    EventType,
    checked_field,
    error_message,
    make_message,
    quote,
    type_name,
    valid_timeout,
)
from .table import Change, DeviceTable

__all__ = ["DeviceRegistry"]

logger = logging.getLogger(__name__)

#: The role a request needs on a secured registry.
_ROLES = {
    EventType.REGISTER: Role.DEVICE,
    EventType.UNREGISTER: Role.DEVICE,
    EventType.CHECK_ALIVE: Role.DEVICE,
    EventType.LIST: Role.VIEWER,
}


def _split_endpoint(addr: str) -> tuple[str, str]:
    """Return (scheme, host) from ``*``, ``127.0.0.1`` or ``tcp://127.0.0.1``."""
    if "://" in addr:
        scheme, host = addr.split("://", 1)
        return scheme, host
    return "tcp", addr


def _port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class DeviceRegistry(threading.Thread):
    """A registry of devices, served on a ZeroMQ ``REP`` socket by its own thread.

    The sockets are bound in the constructor, so :attr:`port` and :attr:`url` are known at once (pass
    ``port=0`` for a port picked by the OS); call :meth:`start` to serve and :meth:`stop` to end.

    Parameters
    ----------
    context : zmq.Context
        Context that owns the sockets.
    addr : str
        Interface to bind, e.g. ``"*"`` (all) or ``"127.0.0.1"``; a ``tcp://`` prefix is accepted.
    port : str or int
        Port of the request socket; ``0`` lets the OS pick one.
    events_port : str or int, optional
        Port of the events ``PUB`` socket, bound on the same interface; the OS picks one when omitted.
    heartbeat_interval : float
        Seconds between two ``HEARTBEAT`` publications.
    keys : KeyRing, optional
        Serve with CurveZMQ (see the module documentation); None: plaintext, as upstream.

    Attributes
    ----------
    port : int
        Bound port of the request socket.
    url : str
        Address a local peer can dial to reach the registry (a wildcard interface is replaced by 127.0.0.1).
    events_port : int
        Bound port of the events socket.
    events_url : str
        Address a local subscriber can dial to receive change events.
    registry_id : str
        Random identifier of this registry instance; a new one after every restart.
    keys : KeyRing or None
        The keys given.

    Raises
    ------
    RegistryError
        If a socket cannot be bound.
    """

    def __init__(
        self,
        context: zmq.Context,
        addr: str = "*",
        port: str | int = str(DEFAULT_REGISTRY_PORT),
        *,
        events_port: str | int | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        keys: KeyRing | None = None,
    ) -> None:
        super().__init__(name="DeviceRegistry", daemon=True)
        if not valid_timeout(heartbeat_interval):
            raise ValidationError(f"heartbeat_interval must be a positive number, got {heartbeat_interval!r}")
        self.context = context
        self.heartbeat_interval = float(heartbeat_interval)
        self.registry_id = uuid.uuid4().hex
        self.keys = keys
        scheme, host = _split_endpoint(addr or "*")
        if ":" in host and not host.startswith("["):  # an IPv6 literal goes in brackets
            host = f"[{host}]"
        self.addr = host
        self._rep: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._endpoints: dict[zmq.Socket, str] = {}
        self._gate = Gate(context, keys, f"registry on {scheme}://{host}") if keys is not None else None
        try:
            self._rep = self._bind(zmq.REP, scheme, host, port, server=True)
            self._pub = self._bind(zmq.PUB, scheme, host, events_port, server=False)
        except BaseException:
            self._close_sockets()
            raise
        self.port = _port_of(self._endpoints[self._rep])
        self.events_port = _port_of(self._endpoints[self._pub])
        local = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        self.url = f"{scheme}://{local}:{self.port}"
        self.events_url = f"{scheme}://{local}:{self.events_port}"
        if self._gate is not None:
            self._gate.label = f"registry on port {self.port}"
            self._gate.watch(self._rep)
            self._gate.watch(self._pub, "events")

        self._table = DeviceTable()
        self._lock = self._table.lock  # guards the table and the callbacks
        self._life_lock = threading.Lock()  # orders stop() before start() against run()
        self._added_callbacks: list[Callable[[str, str, str], Any]] = []
        self._removed_callbacks: list[Callable[[str, str, str], Any]] = []
        self._stop_event = threading.Event()
        self._closed = False
        self._pending: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="DeviceRegistry-callbacks", daemon=True
        )

    def _bind(
        self, socket_type: int, scheme: str, host: str, port: str | int | None, *, server: bool
    ) -> zmq.Socket:
        port_text = "*" if port in (None, 0, "0", "*", "") else str(port)
        endpoint = f"{scheme}://{host}:{port_text}"
        options = self._gate.options() if self._gate is not None else SocketOptions()
        sock = make_socket(
            self.context, socket_type, server=server, ipv6=host.startswith("["), options=options
        )
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise RegistryError(f"registry cannot bind {endpoint}: {exc}") from exc
        self._endpoints[sock] = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        return sock

    # ------------------------------------------------------------------ public API

    @property
    def refusals(self) -> RefusalLog | None:
        """Where a secured registry logs and counts what it refused (None in plaintext); shared by the
        secured servers of one ZeroMQ context."""
        return self._gate.log if self._gate is not None else None

    def add_new_device_callback(self, callback: Callable[[str, str, str], Any]) -> None:
        """Call ``callback(device_type, addr, name)`` whenever a device is added.

        Callbacks run one after the other on a dispatcher thread of the registry, never on the thread that
        answers requests; an exception is logged and does not stop the registry or other callbacks.

        Parameters
        ----------
        callback : callable
            Receives the device type, its advertised address and its accepted name.
        """
        with self._lock:
            self._added_callbacks.append(callback)

    def add_device_removed_callback(self, callback: Callable[[str, str, str], Any]) -> None:
        """Call ``callback(device_type, addr, name)`` whenever a device is removed.

        A device is removed when it unregisters, when its alive timeout expires, or when a new registration
        replaces it. Callbacks run as described in :meth:`add_new_device_callback`.

        Parameters
        ----------
        callback : callable
            Receives the device type, its advertised address and its name.
        """
        with self._lock:
            self._removed_callbacks.append(callback)

    def get_devices(self) -> dict[str, tuple[str, str]]:
        """Return a snapshot of the registered devices.

        Returns
        -------
        dict of str to (str, str)
            Device name -> ``(device_type, addr)``; a copy that later changes do not touch.
        """
        return self._table.snapshot()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, close the sockets and wait for the thread to end.

        Safe to call from any thread, more than once, and before :meth:`start`. The serving thread notices
        within 100 ms. Callbacks already queued still run on the dispatcher thread.

        Parameters
        ----------
        timeout : float
            Longest wait for the threads, in seconds.
        """
        self._stop_event.set()
        with self._life_lock:
            if self.ident is None:  # never started: nobody else will close the sockets
                self._close_sockets()
                self._closed = True
                return
        current = threading.current_thread()
        if current is not self:
            self.join(timeout)
        if current is not self._dispatcher and self._dispatcher.ident is not None:
            self._dispatcher.join(timeout)

    # ------------------------------------------------------------------ serving thread

    def run(self) -> None:
        """Serve requests until :meth:`stop` (the body of the thread; call :meth:`start` instead)."""
        with self._life_lock:
            if self._closed:
                return
            self._dispatcher.start()
        logger.debug("registry serving on %s (events on port %d)", self.url, self.events_port)
        try:
            self._serve()
        except zmq.ContextTerminated:
            logger.debug("registry context terminated")
        except Exception:  # pragma: no cover - the handlers catch everything they can
            logger.exception("registry loop failed")
        finally:
            self._close_sockets()
            self._pending.put(None)

    def _serve(self) -> None:
        assert self._rep is not None
        # Under systemd with WatchdogSec=, the watchdog is fed while this loop keeps turning.
        monitor = _watchdog.watch_loop(f"device registry on port {self.port}")
        try:
            self._serve_loop(monitor)
        finally:
            _watchdog.unwatch_loop(monitor)

    def _serve_loop(self, monitor: _watchdog.LoopMonitor | None) -> None:
        assert self._rep is not None
        next_heartbeat = time.monotonic()
        secured = self._gate is not None
        while not self._stop_event.is_set():
            if monitor is not None:
                monitor.beat()
            now = time.monotonic()
            self._dispatch(self._table.prune(now))
            if now >= next_heartbeat:
                self._publish(
                    make_message(EventType.HEARTBEAT, seq=self._table.seq, registry_id=self.registry_id)
                )
                next_heartbeat = now + self.heartbeat_interval
            wait = min(MAX_POLL, next_heartbeat - now, self._table.next_expiry() - now)
            if self._rep.poll(max(0, math.ceil(wait * 1000))):
                frames = self._rep.recv_multipart(zmq.NOBLOCK, copy=not secured)
                caller = frames[-1] if secured else None
                reply, changes = self._handle([bytes(f) for f in frames] if secured else frames, caller)
                self._rep.send(encode(reply))
                self._dispatch(changes)

    def _dispatch(self, changes: list[Change]) -> None:
        for change in changes:
            payload = {
                "name": change.name,
                "device_type": change.device_type,
                "addr": change.addr,
                "seq": change.seq,
                "registry_id": self.registry_id,
            }
            if change.public_key:
                payload["public_key"] = change.public_key
            self._publish(make_message(change.event, **payload))
            self._pending.put(change)
            logger.debug(
                "registry %s: %s (%s) at %s", change.event, change.name, change.device_type, change.addr
            )

    def _publish(self, message: dict[str, Any]) -> None:
        assert self._pub is not None
        with contextlib.suppress(zmq.Again):  # a PUB socket drops rather than blocks; be sure
            self._pub.send(encode(message), zmq.NOBLOCK)

    def _dispatch_loop(self) -> None:
        while (change := self._pending.get()) is not None:
            with self._lock:
                added = change.event is EventType.DEVICE_ADDED
                callbacks = list(self._added_callbacks if added else self._removed_callbacks)
            for callback in callbacks:
                try:
                    callback(change.device_type, change.addr, change.name)
                except Exception:
                    logger.exception("registry callback %r failed", callback)

    def _close_sockets(self) -> None:
        for sock in (self._rep, self._pub):
            if sock is not None and not sock.closed:
                if self._gate is not None:
                    self._gate.unwatch(sock)
                endpoint = self._endpoints.get(sock)
                if endpoint is not None:
                    release_endpoint(self.context, sock, endpoint)
                sock.close(linger=0)
        if self._gate is not None:
            self._gate.close()

    # ------------------------------------------------------------------ request handling

    def _handle(self, frames: list[bytes], caller: Any = None) -> tuple[dict[str, Any], list[Change]]:
        """Turn one request into (reply, changes); never raises. ``caller``: the frame, when secured."""
        event: str | None = None
        try:
            if len(frames) != 1:
                raise BadRequestError(f"request must be one frame, got {len(frames)}")
            try:
                request = decode_object(frames[0])
            except ProtocolError as exc:
                raise BadRequestError(str(exc)) from None
            if "event" not in request:
                raise BadRequestError("request has no 'event' field")
            if not isinstance(request["event"], str):
                raise BadRequestError(f"field 'event' must be a string, got {type_name(request['event'])}")
            event = request["event"]
            handler = self._handlers.get(event)
            if handler is None:
                return make_message(EventType.UNSUPPORTED, req_event=event), []
            payload = request.get("payload")
            if event == EventType.LIST and payload is None:
                payload = {}
            if "payload" not in request and event != EventType.LIST:
                raise BadRequestError(f"{event} request has no 'payload' field")
            if not isinstance(payload, dict):
                raise BadRequestError(f"field 'payload' must be an object, got {type_name(payload)}")
            key, role = self._authorize(event, caller)
            return handler(self, payload, key, role)
        except BadRequestError as exc:
            logger.debug("registry refused a request: %s", exc)
            return error_message(event, str(exc)), []
        except Exception as exc:  # pragma: no cover - defensive: one bad request must not stop the registry
            logger.exception("registry failed to handle a request")
            return error_message(event, f"internal registry error: {type(exc).__name__}: {exc}"), []

    def _authorize(self, event: str, caller: Any) -> tuple[str, Role]:
        """The caller's key and role; a refusal (logged) when its role is below what ``event`` needs."""
        if self._gate is None or caller is None:
            return "", Role.OPERATOR  # plaintext: everybody may do everything, as upstream
        role, key = self._gate.caller(caller)
        needed = _ROLES[EventType(event)]
        if role is None or role < needed:
            who = self._gate.keys.describe(key)
            has = "is no longer trusted" if role is None else f"has the {role} role"
            text = f"{event} needs the {needed} role; the key {who} {has}"
            self._gate.refuse(caller, event, text)
            raise BadRequestError(text)
        return str(key), role

    def _on_register(
        self, payload: dict[str, Any], key: str, role: Role
    ) -> tuple[dict[str, Any], list[Change]]:
        event = EventType.REGISTER
        device_type, addr, proposed = (
            checked_field(payload, event, key) for key in ("device_type", "addr", "name")
        )
        overwrite = checked_field(payload, event, "overwrite", required=False)
        timeout = checked_field(payload, event, "alive_timeout", required=False) or ALIVE_TIMEOUT
        name, device_uuid, changes = self._table.register(
            device_type,
            addr,
            proposed,
            overwrite=bool(overwrite),
            timeout=timeout,
            public_key=key,
            may_replace_others=role >= Role.OPERATOR,
        )
        if name != proposed:
            logger.info("device proposed name %r, registered as %r", proposed, name)
        return make_message(EventType.REGISTER_ACK, name=name, uuid=device_uuid), changes

    def _on_unregister(
        self, payload: dict[str, Any], key: str, role: Role
    ) -> tuple[dict[str, Any], list[Change]]:
        device_uuid = checked_field(payload, EventType.UNREGISTER, "uuid")
        known, changes = self._table.unregister(
            device_uuid, public_key=key, may_act_for_others=role >= Role.OPERATOR
        )
        return make_message(EventType.ACK, req_event=EventType.UNREGISTER, success=known), changes

    def _on_check_alive(
        self, payload: dict[str, Any], key: str, role: Role
    ) -> tuple[dict[str, Any], list[Change]]:
        device_uuid = checked_field(payload, EventType.CHECK_ALIVE, "uuid")
        timeout = (
            checked_field(payload, EventType.CHECK_ALIVE, "alive_timeout", required=False) or ALIVE_TIMEOUT
        )
        known = self._table.check_alive(
            device_uuid, timeout, public_key=key, may_act_for_others=role >= Role.OPERATOR
        )
        return make_message(EventType.ACK, req_event=EventType.CHECK_ALIVE, success=known), []

    def _on_list(self, payload: dict[str, Any], key: str, role: Role) -> tuple[dict[str, Any], list[Change]]:
        wanted = payload.get("device_type")
        if wanted is not None and not isinstance(wanted, str):
            raise BadRequestError(f"LIST field 'device_type' must be a string, got {quote(wanted)}")
        devices, seq = self._table.listing(wanted)
        reply = make_message(
            EventType.LIST_ACK,
            devices=devices,
            seq=seq,
            events_port=self.events_port,
            registry_id=self.registry_id,
            heartbeat_interval=self.heartbeat_interval,
        )
        return reply, []

    _handlers: dict[
        str, Callable[[DeviceRegistry, dict[str, Any], str, Role], tuple[dict[str, Any], list[Change]]]
    ] = {
        EventType.REGISTER: _on_register,
        EventType.UNREGISTER: _on_unregister,
        EventType.CHECK_ALIVE: _on_check_alive,
        EventType.LIST: _on_list,
    }
