"""``RPCClient``: a proxy to an :class:`~plantimager.commons.server.RPCServer`, and its signal receiver."""

from __future__ import annotations

import abc
import functools
import inspect
import logging
import threading
import uuid as _uuid
import weakref
from collections.abc import Callable
from typing import Any

import zmq

from .. import errors
from ..errors import InterfaceError, ProtocolError, RemoteError, RPCTimeoutError
from .address import parse_url
from .members import interface_functions
from .properties import RPCProperty
from .protocol import SIGNAL_CHECK, NoResult, RPCEvents
from .signals import RPCSignal
from .sockets import Waker, make_socket
from .wire import decode_object, encode

__all__ = ["RPCClient", "RPCSignalReceiver"]

logger = logging.getLogger(__name__)

#: Upper bound on any wait, in ms, used when a server advertises no timeout (``null``).
MAX_WAIT_MS = 10 * 60 * 1000
#: Wait for property reads and writes, in ms.
PROPERTY_TIMEOUT_MS = 10000
#: Wait for a ``STOP_SERVER`` acknowledgement, in ms.
STOP_TIMEOUT_MS = 1000


class _Connection:
    """The client's REQ socket, used by one thread at a time, replaced after any timeout.

    Replacing the socket (the ZeroMQ guide's "lazy pirate" pattern) is what keeps a client usable
    after a reply did not come in time: a REQ socket waiting for a reply refuses to send again.
    """

    def __init__(self, context: zmq.Context, url: str) -> None:
        self.context = context
        self.url = url
        self.endpoint = parse_url(url)
        self.lock = threading.Lock()
        self.socket: zmq.Socket | None = None
        self._rcvtimeo: int | None = None
        self.closed = False

    def _open(self) -> zmq.Socket:
        sock = make_socket(self.context, zmq.REQ, ipv6=self.endpoint.is_ipv6)
        sock.connect(self.url)
        self.socket, self._rcvtimeo = sock, None
        return sock

    def _discard(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def request(self, frame: bytes, timeout_ms: int | None, *, copy: bool = True) -> list[Any]:
        """Send one request frame and return the reply frames.

        Raises
        ------
        RPCTimeoutError
            If no reply came within ``timeout_ms`` (the socket is then replaced).
        """
        wait = MAX_WAIT_MS if timeout_ms is None else min(int(timeout_ms), MAX_WAIT_MS)
        with self.lock:
            if self.closed:
                raise InterfaceError(f"the client of {self.url} is closed")
            sock = self.socket or self._open()
            if self._rcvtimeo != wait:
                sock.rcvtimeo = self._rcvtimeo = wait
            try:
                sock.send(frame)
                return sock.recv_multipart(copy=copy)
            except zmq.Again:
                self._discard()
                raise RPCTimeoutError(f"no reply from {self.url} within {wait} ms") from None
            except zmq.ZMQError:
                self._discard()
                raise

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._discard()


class RPCSignalReceiver(threading.Thread):
    """Background thread receiving a server's signals and emitting them on the client's signals.

    Every message is handled on its own: an unknown signal name, bad arguments, a failing handler
    or a malformed message is logged and the thread goes on with the next one.

    Parameters
    ----------
    context : zmq.Context
        Context used to create the SUB socket.
    url : str
        The server's signal endpoint, ``tcp://<host>:<signal_port>``.
    signals : dict of str to RPCSignal
        Signal name -> the client's signal to emit.

    Attributes
    ----------
    port : int
        The signal port of the server.
    received : int
        Number of signals emitted so far.
    """

    def __init__(self, context: zmq.Context, url: str, signals: dict[str, RPCSignal]) -> None:
        super().__init__(name=f"rpc-signals-{url}", daemon=True)
        self.context = context
        self.url = url
        self.port = parse_url(url).port
        self.signals = dict(signals)
        self.received = 0
        self._stopping = False
        self._last_seq: int | None = None
        self._checks: dict[str, threading.Event] = {}
        self._checks_lock = threading.Lock()
        self._started_ok = threading.Event()
        self._waker = Waker(context)
        self._socket = make_socket(context, zmq.SUB, ipv6=parse_url(url).is_ipv6)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(url)

    def expect_check(self, token: str) -> threading.Event:
        """Return an event set when the check message ``token`` arrives."""
        event = threading.Event()
        with self._checks_lock:
            self._checks[token] = event
        return event

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._waker.socket, zmq.POLLIN)
        try:
            while not self._stopping:
                ready = dict(poller.poll(1000))
                if self._socket in ready:
                    for _ in range(1000):  # bounded burst, then check for stop
                        try:
                            frames = self._socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._dispatch(frames)
                if self._waker.socket in ready:
                    self._waker.drain()
        finally:
            self._socket.close()
            self._waker.close()

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            message = decode_object(frames[0])
            event = message.get("event")
            if event == SIGNAL_CHECK:
                with self._checks_lock:
                    waiter = self._checks.pop(str(message.get("token")), None)
                if waiter is not None:
                    waiter.set()
                return
            if event != RPCEvents.EMIT_SIGNAL:
                logger.debug("ignoring signal-channel message with event %r", event)
                return
            self._check_sequence(message.get("seq"))
            name = message.get("signal")
            signal = self.signals.get(name) if isinstance(name, str) else None
            if signal is None:
                # The server may publish signals our interface does not declare: not an error.
                logger.debug("ignoring signal %r from %s: not declared by the interface", name, self.url)
                return
            args = message.get("args", [])
            if not isinstance(args, list):
                raise ProtocolError(f"signal {name}: 'args' must be an array")
            self.received += 1
            signal.emit(*args)
        except Exception as exc:
            logger.warning("dropped a signal message from %s: %s", self.url, exc)

    def _check_sequence(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        if self._last_seq is not None and seq > self._last_seq + 1:
            logger.warning("lost %d signal message(s) from %s", seq - self._last_seq - 1, self.url)
        self._last_seq = seq

    def stop(self) -> None:
        """Stop the thread and wait for it (up to a few seconds)."""
        self._stopping = True
        self._waker.wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


class RPCClient:
    """Client side of an RPC connection: a proxy whose calls run on the server.

    Subclass it together with an interface and decorate the subclass with
    :meth:`register_interface`; the interface's methods, ``RPCProperty`` members and ``RPCSignal``
    members then work on the proxy as on the server::

        @RPCClient.register_interface(Camera)
        class CameraProxy(Camera, RPCClient):
            pass

        cam = CameraProxy(zmq.Context.instance(), "tcp://127.0.0.1:10345")
        data, info = cam.get_image()

    A client is safe to use from several threads. Remote failures raise
    :class:`~plantimager.commons.errors.RemoteError` (or a subclass that is also the matching
    error of :mod:`plantimager.commons.errors`); a call that gets no reply in time raises
    :class:`~plantimager.commons.errors.RPCTimeoutError` and leaves the client usable.

    Parameters
    ----------
    context : zmq.Context
        Context used for the client's sockets.
    url : str
        ``tcp://<host>:<port>`` of the server.
    timeout : int
        Milliseconds to wait for the inventory and the signal set-up.

    Attributes
    ----------
    name : str
        The server's registry name (empty if it is not registered).
    url : str
        The server URL.

    Notes
    -----
    A call waits as long as the server advertises for the method (at most ten minutes when it
    advertises no limit). :meth:`limit_waits` lowers these waits, e.g. for a controller that must
    notice a dead device quickly.
    """

    _rpc_interface: type | None = None
    _rpc_signal_names: tuple[str, ...] = ()

    def __init__(self, context: zmq.Context, url: str, timeout: int = 1000) -> None:
        self.context = context
        self.url = url
        self.timeout = timeout
        self._conn = _Connection(context, url)
        self._receiver: RPCSignalReceiver | None = None
        self._finalizer = weakref.finalize(self, _close_client, self._conn, [])
        try:
            inventory = self._request({"event": RPCEvents.GET_INVENTORY}, timeout)
            self._load_inventory(inventory)
            wanted = [name for name in self._rpc_signal_names if name in self._remote_signals]
            if wanted:
                self._start_signals(wanted, timeout)
        except BaseException:
            self.close()
            raise

    def _load_inventory(self, inventory: dict[str, Any]) -> None:
        try:
            self.name = str(inventory.get("name", ""))
            self._json_methods: dict[str, int | None] = dict(inventory["json_methods"])
            self._buffer_methods: dict[str, int | None] = dict(inventory["buffer_methods"])
            self._remote_signals: list[str] = list(inventory["signals"])
            self._remote_properties: list[str] = list(inventory["properties"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed inventory from {self.url}: {exc}") from None
        self._protocol = inventory.get("protocol")

    def _start_signals(self, names: list[str], timeout: int) -> None:
        reply = self._request({"event": RPCEvents.INIT_SIGNALS_HANDLING}, timeout)
        if reply.get("success") is not True or not isinstance(reply.get("signal_port"), int):
            raise RemoteError(
                str(reply.get("error", "signal set-up refused")), str(reply.get("traceback", ""))
            )
        signal_url = self._conn.endpoint.with_port(reply["signal_port"])
        receiver = RPCSignalReceiver(self.context, signal_url, {n: getattr(self, n) for n in names})
        self._receiver = receiver
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_client, self._conn, [receiver])
        receiver.start()
        if self._protocol is not None:
            self._confirm_subscription(receiver, timeout)

    def _confirm_subscription(self, receiver: RPCSignalReceiver, timeout: int) -> None:
        """Wait until the subscription is live, so no signal emitted after construction is lost."""
        attempts = max(1, timeout // 20)
        for _ in range(attempts):
            token = _uuid.uuid4().hex
            arrived = receiver.expect_check(token)
            reply = self._request({"event": SIGNAL_CHECK, "token": token}, timeout)
            if reply.get("success") is not True:
                return  # a server without the extension: best effort, as upstream
            if arrived.wait(0.02):
                return
        logger.warning("signal subscription to %s not confirmed within %d ms", self.url, timeout)

    # -- low level ----------------------------------------------------------------------------------
    def _request(self, message: dict[str, Any], timeout: int | None) -> dict[str, Any]:
        frames = self._conn.request(encode(message), timeout)
        return decode_object(frames[0])

    def limit_waits(self, default_ms: int | None = None, per_method: dict[str, int] | None = None) -> None:
        """Cap how long calls wait for a reply, below what the server advertises.

        Parameters
        ----------
        default_ms : int, optional
            Longest wait for any method, in ms.
        per_method : dict of str to int, optional
            Longest wait for particular methods, in ms (takes precedence over ``default_ms``).
        """
        per_method = per_method or {}
        for table in (self._json_methods, self._buffer_methods):
            for name, advertised in table.items():
                cap = per_method.get(name, default_ms)
                if cap is not None:
                    table[name] = cap if advertised is None else min(int(advertised), int(cap))

    def execute(self, method_name: str, params: dict[str, Any]) -> tuple[bool, Any]:
        """Run the remote method ``method_name``.

        Parameters
        ----------
        method_name : str
            A method advertised by the server.
        params : dict
            ``{"args": [...], "kwargs": {...}}`` as sent on the wire.

        Returns
        -------
        tuple
            ``(True, result)`` on success (for a buffer method ``result`` is
            ``(memoryview, info)``), ``(False, NoResult)`` when the server reports a failure.

        Raises
        ------
        InterfaceError
            If the server does not advertise ``method_name`` (nothing is sent).
        RPCTimeoutError
            If the server does not answer within the method's advertised timeout.
        """
        if method_name in self._json_methods:
            buffer, timeout = False, self._json_methods[method_name]
        elif method_name in self._buffer_methods:
            buffer, timeout = True, self._buffer_methods[method_name]
        else:
            raise InterfaceError(f"{self._label()} does not serve a method {method_name!r}")
        args = list(params.get("args", []))
        kwargs = dict(params.get("kwargs", {}))
        frame = encode(
            {
                "event": RPCEvents.METHOD_CALL,
                "method": method_name,
                "params": {"args": args, "kwargs": kwargs},
            }
        )
        frames = self._conn.request(frame, timeout, copy=not buffer)
        if buffer:
            head = decode_object(frames[0].buffer)
            if len(frames) >= 2 and "error" not in head:
                return True, (frames[1].buffer, head)
            return False, _no_result(head)
        reply = decode_object(frames[0])
        if reply.get("success") is True:
            return True, reply.get("result")
        return False, _no_result(reply)

    def _call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        ok, result = self.execute(name, {"args": args, "kwargs": kwargs})
        if ok:
            return result
        raise remote_error(result.error, result.traceback, result.error_type)

    def _get_property(self, name: str) -> Any:
        if name not in self._remote_properties:
            raise InterfaceError(f"{self._label()} exposes no property {name!r}")
        reply = self._request({"event": RPCEvents.PROPERTY_GET, "property": name}, PROPERTY_TIMEOUT_MS)
        if reply.get("success") is True and "value" in reply:
            return reply["value"]
        failure = _no_result(reply)
        raise remote_error(failure.error, failure.traceback, failure.error_type)

    def _set_property(self, name: str, value: Any) -> None:
        if name not in self._remote_properties:
            raise InterfaceError(f"{self._label()} exposes no property {name!r}")
        reply = self._request(
            {"event": RPCEvents.PROPERTY_SET, "property": name, "value": value}, PROPERTY_TIMEOUT_MS
        )
        if reply.get("success") is not True:
            failure = _no_result(reply)
            raise remote_error(failure.error, failure.traceback, failure.error_type)

    def _label(self) -> str:
        return f"server {self.name!r} at {self.url}" if getattr(self, "name", "") else f"server at {self.url}"

    # -- life cycle -------------------------------------------------------------------------------
    def stop_server(self) -> bool:
        """Ask the server to stop serving.

        Returns
        -------
        bool
            True if the server acknowledged, False if it did not answer in time (logged).
        """
        try:
            reply = self._request({"event": RPCEvents.STOP_SERVER}, STOP_TIMEOUT_MS)
        except RPCTimeoutError:
            logger.warning("%s did not acknowledge STOP_SERVER", self._label())
            return False
        logger.info("%s acknowledged STOP_SERVER: %s", self._label(), reply)
        return reply.get("success") is True

    def close(self) -> None:
        """Stop the signal thread and close the sockets. The client cannot be used afterwards."""
        self._finalizer()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @classmethod
    def register_interface(cls, interface: type) -> Callable[[type], type]:
        """Class decorator binding ``interface`` to an ``RPCClient`` subclass.

        Every public function of the interface becomes a proxy that runs the method on the server
        (arguments are sent positionally with defaults applied, as upstream clients do); every
        ``RPCProperty`` becomes a remote property (read-only ones refuse writes locally); every
        ``RPCSignal`` is emitted on the client when the server emits it.

        Parameters
        ----------
        interface : type
            The interface class.

        Returns
        -------
        callable
            The class decorator.

        Raises
        ------
        RuntimeError
            If the decorated class does not inherit from both ``interface`` and ``RPCClient``.
        """

        def decorator(klass: type) -> type:
            if not (issubclass(klass, interface) and issubclass(klass, RPCClient)):
                raise RuntimeError(
                    f"{klass.__name__} must inherit from both {interface.__name__} and RPCClient"
                )
            for name, func in interface_functions(interface).items():
                if name in _CLIENT_API:
                    continue
                setattr(klass, name, _method_proxy(name, func))
            signal_names = []
            for name in dir(interface):
                if name.startswith("_"):
                    continue
                attr = inspect.getattr_static(interface, name)
                if isinstance(attr, RPCProperty):
                    setattr(klass, name, _property_proxy(name, attr))
                elif isinstance(attr, RPCSignal):
                    signal_names.append(name)
            klass._rpc_interface = interface
            klass._rpc_signal_names = tuple(signal_names)
            abc.update_abstractmethods(klass)
            return klass

        return decorator


_CLIENT_API = frozenset(name for name in vars(RPCClient) if not name.startswith("_"))


class _ArgPacker:
    """Turns a proxy call into wire ``args``/``kwargs`` like upstream: named parameters positionally,
    defaults applied; keyword-only and ``**kwargs`` parameters in ``kwargs``."""

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        params = list(inspect.signature(func).parameters.values())[1:]
        self.signature = inspect.Signature(params)
        self.name = name
        self.positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.simple = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self.defaults = [p.default for p in self.positional]

    def pack(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        n = len(args)
        if self.simple and not kwargs and n <= len(self.positional):
            tail = self.defaults[n:]
            if inspect.Parameter.empty not in tail:
                return [*args, *tail], {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        wire_args: list[Any] = []
        wire_kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            value = bound.arguments.get(param.name)
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                wire_args.append(value)
            elif param.kind is param.VAR_POSITIONAL:
                wire_args.extend(value or ())
            elif param.kind is param.KEYWORD_ONLY:
                wire_kwargs[param.name] = value
            else:
                wire_kwargs.update(value or {})
        return wire_args, wire_kwargs


def _method_proxy(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    packer = _ArgPacker(func, name)

    def proxy(self: RPCClient, *args: Any, **kwargs: Any) -> Any:
        wire_args, wire_kwargs = packer.pack(args, kwargs)
        return self._call(name, wire_args, wire_kwargs)

    functools.update_wrapper(proxy, func)
    proxy.__isabstractmethod__ = False  # type: ignore[attr-defined]
    return proxy


def _property_proxy(name: str, declared: RPCProperty) -> RPCProperty:
    def fget(self: RPCClient) -> Any:
        return self._get_property(name)

    def fset(self: RPCClient, value: Any) -> None:
        if declared.fset is None:
            raise InterfaceError(f"property {name!r} is read-only")
        self._set_property(name, value)

    fget.__name__ = fset.__name__ = name
    return RPCProperty(fget, fset, doc=declared.__doc__, notify=declared.notify)


def _no_result(reply: dict[str, Any]) -> NoResult:
    error_type = reply.get("error_type")
    return NoResult(
        str(reply.get("error", "the server reported a failure without details")),
        str(reply.get("traceback", "") or ""),
        error_type if isinstance(error_type, str) else None,
    )


_REMOTE_CLASSES: dict[str, type[RemoteError]] = {}


def remote_error(error: str, traceback: str = "", error_type: str | None = None) -> RemoteError:
    """Build the exception for a remote failure.

    When the server names an error type of :mod:`plantimager.commons.errors` (or a built-in one
    such as ``ValueError``), the exception is also an instance of that type, so callers can write
    ``except ImageUnavailable``.
    """
    base = _error_base(error_type)
    if base is None:
        return RemoteError(error, traceback)
    cls = _REMOTE_CLASSES.get(error_type)  # type: ignore[arg-type]
    if cls is None:
        cls = type(f"Remote{error_type}", (RemoteError, base), {"__str__": RemoteError.__str__})
        _REMOTE_CLASSES[error_type] = cls  # type: ignore[index]
    exc = cls.__new__(cls)
    RemoteError.__init__(exc, error, traceback)
    return exc


def _error_base(error_type: str | None) -> type[Exception] | None:
    if not error_type:
        return None
    candidate = getattr(errors, error_type, None)
    if isinstance(candidate, type) and issubclass(candidate, errors.PlantImagerError):
        return None if issubclass(candidate, RemoteError) else candidate
    builtin = {
        "ValueError": ValueError,
        "TypeError": TypeError,
        "KeyError": KeyError,
        "AttributeError": AttributeError,
        "PermissionError": PermissionError,
        "FileNotFoundError": FileNotFoundError,
    }
    return builtin.get(error_type)


def _close_client(conn: _Connection, receivers: list[RPCSignalReceiver]) -> None:
    for receiver in receivers:
        receiver.stop()
    conn.close()
