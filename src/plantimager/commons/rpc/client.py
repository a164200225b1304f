"""``RPCClient``: a proxy to an RPC server: calls, properties, signals and ``execute``."""

from __future__ import annotations

import abc
import inspect
import logging
import uuid as _uuid
import weakref
from collections.abc import Callable
from typing import Any

import zmq

from ..errors import InterfaceError, ProtocolError, RemoteError, RPCTimeoutError, ValidationError
from ..security import KeyRing
from .connection import Connection
from .members import interface_functions
from .properties import RPCProperty
from .protocol import SIGNAL_CHECK, RPCEvents
from .proxy import method_proxy, property_proxy
from .receiver import RPCSignalReceiver
from .remote import no_result, remote_error
from .signals import RPCSignal
from .sockets import SocketOptions
from .wire import decode_object, encode, non_finite

__all__ = ["RPCClient", "RPCSignalReceiver"]

logger = logging.getLogger(__name__)

#: Wait for property reads and writes, in ms.
PROPERTY_TIMEOUT_MS = 10000
#: Wait for a ``STOP_SERVER`` acknowledgement, in ms.
STOP_TIMEOUT_MS = 1000


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
    keys : KeyRing, optional
        Talk CurveZMQ with this host's key pair (the server must trust its public key); None:
        plaintext, as upstream.
    server_key : str or bytes, optional
        With ``keys``: the server's public key (Z85), which the server must prove it holds. A
        device found through a registry gives it (``DeviceInfo.public_key``).

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

    def __init__(
        self,
        context: zmq.Context,
        url: str,
        timeout: int = 1000,
        *,
        keys: KeyRing | None = None,
        server_key: str | bytes | None = None,
    ) -> None:
        self.context = context
        self.url = url
        self.timeout = timeout
        self._options: SocketOptions | None = None
        if keys is not None:
            if not server_key:
                raise ValidationError(f"a secured client of {url} needs the server's public key (server_key)")
            self._options = SocketOptions(curve=keys.client_curve(server_key))
        self._conn = Connection(context, url, self._options)
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
        receiver = RPCSignalReceiver(
            self.context, signal_url, {n: getattr(self, n) for n in names}, self._options
        )
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
        if b"null" in frame:  # NaN and infinity are written as null: refuse them rather than send None
            _check_finite(method_name, args, kwargs, getattr(type(self), method_name, None))
        frames = self._conn.request(frame, timeout, copy=not buffer)
        if buffer:
            head = decode_object(frames[0].buffer)
            if len(frames) >= 2 and "error" not in head:
                return True, (frames[1].buffer, head)
            return False, no_result(head)
        reply = decode_object(frames[0])
        if reply.get("success") is True:
            return True, reply.get("result")
        return False, no_result(reply)

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
        failure = no_result(reply)
        raise remote_error(failure.error, failure.traceback, failure.error_type)

    def _set_property(self, name: str, value: Any) -> None:
        if name not in self._remote_properties:
            raise InterfaceError(f"{self._label()} exposes no property {name!r}")
        _finite_or_refuse(f"property {name!r}: the value", value)
        reply = self._request(
            {"event": RPCEvents.PROPERTY_SET, "property": name, "value": value}, PROPERTY_TIMEOUT_MS
        )
        if reply.get("success") is not True:
            failure = no_result(reply)
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
                setattr(klass, name, method_proxy(name, func))
            signal_names = []
            for name in dir(interface):
                if name.startswith("_"):
                    continue
                attr = inspect.getattr_static(interface, name)
                if isinstance(attr, RPCProperty):
                    setattr(klass, name, property_proxy(name, attr))
                elif isinstance(attr, RPCSignal):
                    signal_names.append(name)
            klass._rpc_interface = interface
            klass._rpc_signal_names = tuple(signal_names)
            abc.update_abstractmethods(klass)
            return klass

        return decorator


_CLIENT_API = frozenset(name for name in vars(RPCClient) if not name.startswith("_"))


def _close_client(conn: Connection, receivers: list[RPCSignalReceiver]) -> None:
    for receiver in receivers:
        receiver.stop()
    conn.close()


def _check_finite(method: str, args: list[Any], kwargs: dict[str, Any], proxy: Any) -> None:
    """Refuse a call with a NaN or an infinity among its arguments, naming it (nothing is sent).

    Positional arguments are named after the interface's parameters when ``proxy`` has them.
    """
    try:
        names = [p for p in inspect.signature(proxy).parameters if p != "self"] if proxy else []
    except (TypeError, ValueError):
        names = []
    named = [
        (f"argument {names[index]!r}" if index < len(names) else f"argument {index + 1}", value)
        for index, value in enumerate(args)
    ]
    named += [(f"argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in named:
        _finite_or_refuse(f"{method}(): {label}", value)


def _finite_or_refuse(what: str, value: Any) -> None:
    """Raise a ValidationError naming ``what`` if ``value`` holds a NaN or an infinity (JSON has neither)."""
    where = non_finite(value)
    if where is not None:
        inside = "" if where == "the value" else f" (at {where})"
        raise ValidationError(f"{what}{inside} is not a finite number; JSON cannot carry NaN or infinity")
