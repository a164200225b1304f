"""``RPCServerBase``: exposes an object's methods, properties and signals over ZeroMQ.

Joining a device registry is added on top, by :class:`plantimager.commons.registry.member.RPCServer` (the
``RPCServer`` of :mod:`plantimager.commons.RPC`), so the RPC core knows nothing of the registry.

Wire protocol: see ``docs/protocol.md``. The request socket is a ROUTER, which REQ clients
(ours and upstream's) talk to exactly as to a REP socket, but which lets the server answer every
message, even malformed ones, without ever getting stuck in REP's strict send/receive alternation.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import zmq

from .. import watchdog as _watchdog
from ..errors import ProtocolError
from ..security import KeyRing, Role
from .access import needed_role, refusal, what_request
from .address import advertised_host, parse_url, url_host
from .guard import Gate
from .members import BUFFER_MARK, JSON_MARK, Members, collect_members, mark_remote
from .protocol import PROTOCOL_VERSION, SIGNAL_CHECK, RPCEvents, error_reply
from .publisher import SignalPublisher
from .refusals import RefusalLog
from .replies import buffer_reply, failure_reply, unknown_event_text
from .signals import RPCSignal
from .sockets import (
    DEFAULT_MAX_MESSAGE_SIZE,
    SocketOptions,
    Waker,
    bind_with_retry,
    close_all,
    make_socket,
)
from .typecheck import coerce_to_generic, is_instance_of_generic
from .wire import decode_object, encode

__all__ = ["RPCServerBase"]

logger = logging.getLogger(__name__)

_EMPTY = b""
_OK = encode({"success": True})
_POLL_MS = 1000
_SNDMORE = int(zmq.SNDMORE)
_ZERO_COPY_MIN = 64 * 1024  # below this, pyzmq copies a frame anyway


class RPCServerBase:
    """Serve an object's methods, properties and signals to :class:`RPCClient` peers.

    Make a class that inherits from an interface and from ``RPCServer``; mark the remotely
    callable methods with :meth:`register_method_json` or :meth:`register_method_buffer`;
    declare properties with ``RPCProperty`` and signals with ``RPCSignal``. Only those members
    are reachable: other attributes, private and dunder names are refused with an error reply.

    Parameters
    ----------
    context : zmq.Context
        Context used for every socket of the server.
    url : str
        Where to listen, ``tcp://<host>[:<port>]``. Without a port a free port in 10000-11999 is
        chosen; port ``0`` lets the system pick one. The host may be a name, an IPv4 or bracketed
        IPv6 address, or ``*`` for every interface.
    alive_timeout : int
        Seconds after which the registry may forget this server if it stops reporting.
    max_request_size : int, optional
        Largest request accepted, in bytes; larger ones get an error reply.
    keys : KeyRing, optional
        Serve with CurveZMQ: every connection is encrypted, only clients whose keys ``keys`` trusts
        connect, and each request needs the role its member declares (see
        :mod:`~plantimager.commons.rpc.access`). None: plaintext, as upstream.

    Attributes
    ----------
    context : zmq.Context
        The context given at construction.
    url : str
        The URL given at construction, without port.
    port : int
        The port the request socket is bound to.
    address : str
        The address peers can dial, ``tcp://<host>:<port>`` (a wildcard host replaced by a real one).
    name : str
        Name accepted by the registry; empty when not registered.
    uuid : str
        Identifier given by the registry; empty when not registered.
    registry_addr : str
        URL of the registry this server registered with; empty when not registered.
    keys : KeyRing or None
        The keys given (None: plaintext).
    """

    def __init__(
        self,
        context: zmq.Context,
        url: str,
        alive_timeout: int = 60,
        *,
        max_request_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        keys: KeyRing | None = None,
    ) -> None:
        endpoint = parse_url(url)
        self.context = context
        self.alive_timeout = alive_timeout
        self.max_request_size = max_request_size
        self.name = ""
        self.uuid = ""
        self.registry_addr = ""
        self.peer_addr = ""
        self._endpoint = endpoint
        self.url = f"{endpoint.scheme}://{endpoint.host_for_url()}"
        self._members: Members = _members_of(type(self))
        self.keys = keys
        self._gate = Gate(context, keys, f"{type(self).__name__} on {url}") if keys is not None else None
        self._caller: tuple[Role | None, Any] | None = None  # secured: (role, frame) of the request served
        options = (
            self._gate.options(max_request_size)
            if self._gate is not None
            else SocketOptions(max_message_size=max_request_size)
        )
        sock = make_socket(context, zmq.ROUTER, server=True, ipv6=endpoint.is_ipv6, options=options)
        try:
            if endpoint.port is None:
                self.port = sock.bind_to_random_port(self.url, min_port=10000, max_port=12000, max_tries=100)
            else:
                bind_with_retry(sock, endpoint.with_port(endpoint.port or "*"))
                self.port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
            self._waker = Waker(context)
            if self._gate is not None:
                self._gate.label = f"{type(self).__name__} on port {self.port}"
                self._gate.watch(sock)
        except BaseException:
            sock.close()
            if self._gate is not None:
                self._gate.close()
            raise
        self._socket: zmq.Socket | None = sock
        self.address = f"{endpoint.scheme}://{url_host(advertised_host(endpoint.host))}:{self.port}"
        self._publisher: SignalPublisher | None = None
        self._stop = False
        self._dead = False
        self._serving = False
        self._serve_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._state_lock = threading.Lock()
        self._monitor: _watchdog.LoopMonitor | None = None  # systemd watchdog, while serving
        self._handlers = {
            RPCEvents.GET_INVENTORY: self._handle_get_inventory,
            RPCEvents.INIT_SIGNALS_HANDLING: self._handle_init_signals,
            RPCEvents.METHOD_CALL: self._handle_method_call,
            RPCEvents.PROPERTY_GET: self._handle_property_get,
            RPCEvents.PROPERTY_SET: self._handle_property_set,
            RPCEvents.FIND_PEER_ADDRESS: self._handle_find_peer,
            SIGNAL_CHECK: self._handle_signal_check,
        }
        self._finalizer = weakref.finalize(self, close_all, [sock, self._waker, self._gate])
        logger.debug("%s listening on %s (advertised as %s)", type(self).__name__, url, self.address)

    @property
    def refusals(self) -> RefusalLog | None:
        """Where a secured server logs and counts what it refused (None in plaintext); shared by the
        secured servers of one ZeroMQ context."""
        return self._gate.log if self._gate is not None else None

    # -- registration of remote methods ---------------------------------------------------------
    @staticmethod
    def register_method_json(timeout: int | None = 10000, role: Role | str = Role.OPERATOR) -> Any:
        """Mark a method as remotely callable, its result travelling as JSON.

        Usable bare (``@RPCServer.register_method_json``) or with a timeout.

        Parameters
        ----------
        timeout : int or None
            How long, in ms, a client should wait for the method; None means as long as the
            client allows.
        role : Role or str
            The role a caller's key needs on a secured server: ``"viewer"`` for a method that only
            reads, ``"operator"`` (the default) for one that changes anything.

        Returns
        -------
        callable
            The decorator (or the marked method when used bare).
        """
        return mark_remote(timeout, JSON_MARK, role)

    @staticmethod
    def register_method_buffer(timeout: int | None = 10000, role: Role | str = Role.OPERATOR) -> Any:
        """Mark a method as remotely callable, returning ``(buffer, info)``.

        The buffer (bytes, memoryview, numpy array...) travels as a raw frame without copy;
        ``info`` is a JSON-serialisable dict which must not contain the key ``error``.

        Parameters
        ----------
        timeout : int or None
            How long, in ms, a client should wait for the method; None means as long as the
            client allows.
        role : Role or str
            The role a caller's key needs on a secured server: ``"viewer"`` for a method that only
            reads, ``"operator"`` (the default) for one that changes anything.

        Returns
        -------
        callable
            The decorator (or the marked method when used bare).
        """
        return mark_remote(timeout, BUFFER_MARK, role)

    # -- serving ---------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Answer requests until the server is stopped, locally or by a ``STOP_SERVER`` request.

        Every request gets a reply: malformed, unknown or oversized requests get an error reply
        and the server keeps serving. On return the sockets are closed, the server unregistered,
        and this instance cannot serve again.

        Raises
        ------
        RuntimeError
            If the server was already stopped.
        """
        with self._state_lock:
            if self._dead or self._socket is None:
                raise RuntimeError("this RPCServer was stopped; create a new instance to serve again")
            if self._serving:
                raise RuntimeError("serve_forever is already running in another thread")
            self._serving = True
            self._serve_thread = threading.current_thread()
        sock = self._socket
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.socket, zmq.POLLIN)
        timeouts = {name: m.timeout for name, m in self._members.methods.items()}
        monitor = self._monitor = _watchdog.watch_loop(f"{type(self).__name__} on port {self.port}", timeouts)
        gate = self._gate
        try:
            while not self._stop:
                if monitor is not None:
                    monitor.beat()
                for ready, _ in poller.poll(_POLL_MS):
                    if ready is not sock:
                        self._waker.drain()
                    elif gate is None:
                        self._serve_one(sock, sock.recv_multipart())
                    else:
                        self._serve_secured(sock, gate)
        finally:
            self._monitor = None
            _watchdog.unwatch_loop(monitor)
            self._shutdown()

    def _serve_secured(self, sock: zmq.Socket, gate: Gate) -> None:
        """Serve one request of a CURVE connection, knowing the role of the caller's key."""
        frames = sock.recv_multipart(copy=False)
        role, _key = gate.caller(frames[-1])
        self._caller = (role, frames[-1])
        try:
            self._serve_one(sock, [frame.bytes for frame in frames])
        finally:
            self._caller = None

    def _authorize(self, event: Any, request: dict[str, Any]) -> None:
        """Refuse (and log) a request of a secured server's caller whose key lacks the role it needs."""
        assert self._caller is not None and self._gate is not None
        role, frame = self._caller
        needed = needed_role(event, request, self._members)
        if role is not None and role >= needed:
            return
        what = what_request(event, request)
        refused = refusal(what, needed, role, self._gate.keys.describe(frame.get("User-Id")))
        self._gate.refuse(frame, what, str(refused))
        raise refused

    def _serve_one(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        # Envelope: routing id, then (REQ_CORRELATE) request id, up to the empty delimiter.
        try:
            split = frames.index(_EMPTY, 1) + 1
        except ValueError:
            split = 1
        envelope, body = frames[:split], frames[split:]
        try:
            if len(body) != 1:
                raise ProtocolError(
                    f"a request must be exactly one frame holding a JSON object, got {len(body)} frames"
                )
            if len(body[0]) > self.max_request_size:
                raise ProtocolError(
                    f"request of {len(body[0])} bytes exceeds the limit of {self.max_request_size} bytes"
                )
            request = decode_object(body[0])
            event = request.get("event")
            if self._caller is not None:
                self._authorize(event, request)
            handler = self._handlers.get(event) if isinstance(event, str) else None
            if handler is None:
                if event == RPCEvents.STOP_SERVER:
                    sock.send_multipart([*envelope, _OK])
                    self._stop = True
                    return
                raise ProtocolError(unknown_event_text(event))
            if self._monitor is not None:
                self._monitor.enter(request)
            reply = handler(request)
        except Exception as exc:
            reply = [encode(failure_reply(exc))]
        try:
            # Plain sends are cheaper than send_multipart; only large buffers go without copy
            # (pyzmq copies anything under its copy threshold anyway).
            for part in envelope:
                sock.send(part, _SNDMORE)
            last = len(reply) - 1
            for index, part in enumerate(reply):
                flags = 0 if index == last else _SNDMORE
                if isinstance(part, memoryview) and part.nbytes >= _ZERO_COPY_MIN:
                    sock.send(part, flags, copy=False)
                else:
                    sock.send(part, flags)
        except zmq.ZMQError as exc:  # the peer went away; nothing else to do
            logger.debug("could not send reply: %s", exc)

    # -- handlers (each returns the reply frames) -------------------------------------------------
    def _handle_get_inventory(self, request: dict[str, Any]) -> list[Any]:
        return [encode(self.inventory())]

    def inventory(self) -> dict[str, Any]:
        """The inventory sent to clients: methods with timeouts, signals, properties and name."""
        methods = self._members.methods.values()
        return {
            "json_methods": {m.name: m.timeout for m in methods if not m.buffer},
            "buffer_methods": {m.name: m.timeout for m in methods if m.buffer},
            "signals": list(self._members.signals),
            "properties": list(self._members.properties),
            "name": self.name,
            "protocol": PROTOCOL_VERSION,
            "readonly_properties": [n for n, p in self._members.properties.items() if p.readonly],
        }

    def _handle_init_signals(self, request: dict[str, Any]) -> list[Any]:
        if self._publisher is None:
            gate = self._gate
            publisher = SignalPublisher(self.context, self._endpoint, gate.options() if gate else None)
            if gate is not None:
                gate.watch(publisher.socket, "signals")
            for name in self._members.signals:
                signal = getattr(self, name)
                if isinstance(signal, RPCSignal):
                    signal.connect(publisher.forwarder(name))
            self._publisher = publisher
        return [encode({"success": True, "signal_port": self._publisher.port})]

    def _handle_signal_check(self, request: dict[str, Any]) -> list[Any]:
        token = request.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= 128:
            raise ProtocolError("SIGNAL_CHECK needs a 'token' string of 1 to 128 characters")
        if self._publisher is None:
            raise ProtocolError("SIGNAL_CHECK before INIT_SIGNALS_HANDLING")
        self._publisher.send_raw({"event": SIGNAL_CHECK, "token": token})
        return [_OK]

    def _handle_method_call(self, request: dict[str, Any]) -> list[Any]:
        name = request.get("method")
        if not isinstance(name, str):
            raise ProtocolError("METHOD_CALL needs a 'method' field holding the method name")
        method = self._members.methods.get(name)
        if method is None:
            reply = error_reply(f"Method {name} not implemented", "")  # upstream's wording
            reply["error_type"] = "InterfaceError"
            return [encode(reply)]
        params = request.get("params", {})
        if not isinstance(params, dict):
            raise ProtocolError("'params' must be an object with 'args' (array) and 'kwargs' (object)")
        args = params.get("args", [])
        kwargs = params.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ProtocolError("'params.args' must be an array and 'params.kwargs' an object")
        call_args, call_kwargs = method.binder.bind(args, kwargs)
        result = getattr(self, name)(*call_args, **call_kwargs)
        if not method.buffer:
            try:
                return [encode({"success": True, "result": result})]
            except TypeError as exc:
                raise TypeError(f"{name}() returned a value that cannot be sent as JSON: {exc}") from None
        return buffer_reply(name, result)

    def _handle_property_get(self, request: dict[str, Any]) -> list[Any]:
        prop = self._exposed_property(request)
        value = prop.__get__(self, type(self))
        try:
            return [encode({"success": True, "value": value})]
        except TypeError as exc:
            raise TypeError(
                f"property {request['property']!r} has a value that cannot be sent: {exc}"
            ) from None

    def _handle_property_set(self, request: dict[str, Any]) -> list[Any]:
        prop = self._exposed_property(request)
        name = request["property"]
        if prop.fset is None:
            raise AttributeError(f"property {name!r} of {type(self).__name__!r} object has no setter")
        if "value" not in request:
            raise ProtocolError("PROPERTY_SET needs a 'value' field")
        value = request["value"]
        spec = prop.value_type()
        if not is_instance_of_generic(value, spec):
            try:
                value = coerce_to_generic(value, spec)
            except TypeError as exc:
                raise TypeError(f"property {name!r}: {exc}") from None
        prop.__set__(self, value)
        return [_OK]

    def _exposed_property(self, request: dict[str, Any]) -> Any:
        name = request.get("property")
        if not isinstance(name, str):
            raise ProtocolError(f"{request.get('event')} needs a 'property' field holding the property name")
        prop = self._members.properties.get(name)
        if prop is None:
            raise AttributeError(f"{type(self).__name__} exposes no property {name!r}")
        return prop

    def _handle_find_peer(self, request: dict[str, Any]) -> list[Any]:
        raise ProtocolError(
            "FIND_PEER_ADDRESS belongs to an older signal protocol; send INIT_SIGNALS_HANDLING instead"
        )

    # -- stopping --------------------------------------------------------------------------------
    def stop_server(self, timeout: float = 10.0) -> None:
        """Stop serving (and, for a server that joined a registry, unregister from it).

        Safe to call from any thread and more than once. Called from another thread than the one
        serving, it returns once the serve loop has closed its sockets (so the port can be bound
        again) or after ``timeout`` seconds; called from a handler, the loop ends after the reply.
        If ``serve_forever`` was never started, the sockets are closed here.
        """
        self._stop = True
        with self._state_lock:
            serving = self._serving
        if not serving:
            self._shutdown()
            return
        self._waker.wake()
        if threading.current_thread() is not self._serve_thread:
            self._stopped.wait(timeout)

    def _on_stop(self) -> None:
        """Hook run once when the server stops, before its sockets close; subclasses extend it."""

    def _shutdown(self) -> None:
        with self._state_lock:
            if self._dead:
                return
            self._dead = True
            self._serving = False
        self._on_stop()
        gate = self._gate
        if self._publisher is not None:
            if gate is not None:
                gate.unwatch(self._publisher.socket)
            self._publisher.close()
        if self._socket is not None:
            if gate is not None:
                gate.unwatch(self._socket)
            self._socket.close()
            self._socket = None
        self._waker.close()
        if gate is not None:
            gate.close()
        self._finalizer.detach()
        self._stopped.set()
        logger.info("server %s on port %s stopped", self.name or type(self).__name__, self.port)


_MEMBERS_CACHE: dict[type, Members] = {}


def _members_of(cls: type) -> Members:
    members = _MEMBERS_CACHE.get(cls)
    if members is None:
        members = _MEMBERS_CACHE[cls] = collect_members(cls, stop=(RPCServerBase,))
    return members
