"""What the registry and its peers say to each other: event names, message shapes, one request.

Shared by the registry (:mod:`.server`), the device side (:mod:`.device`, :mod:`.link`) and the listing side
(:mod:`.watcher`). Every message is one frame holding ``{"event": <str>, "payload": {...}}``; the events are
listed in :class:`EventType` and described in ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ..errors import ProtocolError, RegistryError, ValidationError
from ..number import is_finite
from ..rpc.address import parse_url
from ..rpc.sockets import SocketOptions, make_socket
from ..rpc.wire import decode_object, encode
from ..security import KeyRing

__all__ = [
    "ALIVE_TIMEOUT",
    "DEFAULT_REGISTRY_PORT",
    "FIELDS",
    "HEARTBEAT_INTERVAL",
    "MAX_POLL",
    "AliveStatus",
    "BadRequestError",
    "DeviceInfo",
    "EventType",
    "checked_field",
    "client_options",
    "describe",
    "error_message",
    "is_text",
    "make_message",
    "normalise_url",
    "payload_of",
    "quote",
    "request",
    "type_name",
    "valid_timeout",
]

#: Port the registry binds when none is given.
DEFAULT_REGISTRY_PORT = 5555
#: Seconds a device stays listed without a ``CHECK_ALIVE``, unless it asks for another value.
ALIVE_TIMEOUT = 20
#: Seconds between two ``HEARTBEAT`` publications on the events socket.
HEARTBEAT_INTERVAL = 0.5


#: Longest time the registry loop sleeps in one poll, in seconds (bounds stop() and expiry latency).
MAX_POLL = 0.1


#: Longest text of a peer's value quoted back in an error message.
MAX_QUOTE = 60


class EventType(enum.StrEnum):
    """Values of the ``event`` field of registry messages.

    The first six are upstream's; the others are our extensions, which upstream peers never send nor receive.
    """

    REGISTER = "REGISTER"
    REGISTER_ACK = "REGISTER_ACK"
    UNREGISTER = "UNREGISTER"
    CHECK_ALIVE = "CHECK_ALIVE"
    ACK = "ACK"
    UNSUPPORTED = "UNSUPPORTED"
    # Extensions.
    LIST = "LIST"
    LIST_ACK = "LIST_ACK"
    ERROR = "ERROR"
    DEVICE_ADDED = "DEVICE_ADDED"
    DEVICE_REMOVED = "DEVICE_REMOVED"
    HEARTBEAT = "HEARTBEAT"


class AliveStatus(enum.StrEnum):
    """Outcome of :func:`send_alive_check`."""

    #: The registry knows the device; its expiry was pushed back.
    OK = "ok"
    #: The registry answered but does not know the device (it should register again).
    UNKNOWN = "unknown"
    #: No reply in time.
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One registered device, as a controller sees it.

    Parameters
    ----------
    name : str
        Name accepted by the registry (unique within it).
    device_type : str
        Kind of device, e.g. ``"camera"``.
    addr : str
        Address the device advertised, kept as the device sent it.
    public_key : str
        On a secured registry, the public key (Z85) the device registered with: the key a client
        expects the device to prove it holds. Empty on a plaintext registry.
    """

    name: str
    device_type: str
    addr: str
    public_key: str = ""

    def __repr__(self) -> str:
        key = f", public_key={self.public_key!r}" if self.public_key else ""
        return f"DeviceInfo(name={self.name!r}, device_type={self.device_type!r}, addr={self.addr!r}{key})"


def quote(value: Any) -> str:
    """Return ``repr(value)``, cut to :data:`MAX_QUOTE` characters, for quoting a peer's value in an error."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."


def type_name(value: Any) -> str:
    """Return the JSON-minded name of ``value``'s type (``null`` for None)."""
    return "null" if value is None else type(value).__name__


def valid_timeout(value: Any) -> bool:
    """Tell whether ``value`` is a finite, positive number of seconds."""
    return is_finite(value) and value > 0


def make_message(event: EventType, **payload: Any) -> dict[str, Any]:
    """Return the message object ``{"event": event, "payload": payload}``."""
    return {"event": event, "payload": payload}


def error_message(req_event: str | None, text: str) -> dict[str, Any]:
    """Return the ``ERROR`` reply to a request of event ``req_event``, saying ``text``."""
    return make_message(EventType.ERROR, req_event=req_event, error=text)


def normalise_url(url: str) -> str:
    """Return ``url`` stripped, with ``tcp://`` in front when it names no scheme.

    Raises
    ------
    ValidationError
        If it is not a registry's address, ``tcp://HOST:PORT`` (``HOST:PORT`` alone will do).
    """
    if not isinstance(url, str):
        raise ValidationError(f"a registry address must be a string, got {type(url).__name__}")
    url = url.strip()
    url = url if "://" in url else f"tcp://{url}"
    try:
        endpoint = parse_url(url)
    except ValueError as exc:
        raise ValidationError(f"a registry address is tcp://HOST:PORT; {exc}") from None
    if endpoint.scheme != "tcp" or not endpoint.port or endpoint.host in ("*", "0.0.0.0"):
        raise ValidationError(f"a registry address is tcp://HOST:PORT, got {url!r}")
    return url


def client_options(keys: KeyRing | None) -> SocketOptions | None:
    """Socket options of a client of the registry: CURVE with ``keys`` and the registry's key, or None."""
    return None if keys is None else SocketOptions(curve=keys.client_curve(keys.registry_key))


def wait_for(sock: zmq.Socket, flag: int, deadline: float, stop: threading.Event | None) -> bool:
    """Poll ``sock`` for ``flag`` until ``deadline``; slices of 100 ms when ``stop`` may cut it short."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return False
        step = min(left, MAX_POLL) if stop is not None else left
        if sock.poll(max(1, math.ceil(step * 1000)), flag):
            return True


def request(
    context: zmq.Context,
    url: str,
    message: dict[str, Any],
    timeout_ms: int,
    *,
    stop: threading.Event | None = None,
    keys: KeyRing | None = None,
) -> dict[str, Any] | None:
    """Send one request on a fresh ``REQ`` socket and return the reply object, or None if none came in time.

    With ``keys``, the request goes over CurveZMQ to a registry whose key is ``keys.registry_key``.

    Raises
    ------
    RegistryError
        If ``url`` cannot be dialled.
    ProtocolError
        If the reply is not a single-frame JSON object.
    """
    sock = make_socket(context, zmq.REQ, ipv6="://[" in url, options=client_options(keys))
    try:
        try:
            sock.connect(url)
        except zmq.ZMQError as exc:
            raise RegistryError(f"cannot dial the registry at {url!r}: {exc}") from exc
        deadline = time.monotonic() + max(0, timeout_ms) / 1000
        while True:
            if not wait_for(sock, zmq.POLLOUT, deadline, stop):
                return None
            try:
                sock.send(encode(message), zmq.NOBLOCK)
                break
            except zmq.Again:  # the connection went between the poll and the send (a refused handshake)
                continue
        if not wait_for(sock, zmq.POLLIN, deadline, stop):
            return None
        frames = sock.recv_multipart(zmq.NOBLOCK)
    finally:
        sock.close(linger=0)
    if len(frames) != 1:
        raise ProtocolError(f"reply must be one frame, got {len(frames)}")
    return decode_object(frames[0])


def payload_of(reply: dict[str, Any], expected: EventType) -> dict[str, Any] | None:
    """Return the payload of ``reply`` if its event is ``expected`` and its payload an object."""
    payload = reply.get("payload")
    if reply.get("event") != expected or not isinstance(payload, dict):
        return None
    return payload


def describe(reply: dict[str, Any]) -> str:
    """Say in a few words what an unexpected reply was, for an error message."""
    payload = reply.get("payload")
    if reply.get("event") == EventType.ERROR and isinstance(payload, dict):
        return f"ERROR: {payload.get('error')}"
    return f"unexpected reply {quote(reply)}"


class BadRequestError(Exception):
    """A request that gets an ``ERROR`` reply; its text says what was wrong."""


def is_text(value: Any) -> bool:
    """Tell whether ``value`` is a non-empty string."""
    return isinstance(value, str) and value != ""


#: Request field -> (check, what the error message says it must be).
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device_type": (is_text, "a non-empty string"),
    "addr": (is_text, "a non-empty string"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "uuid": (lambda v: isinstance(v, str), "a string"),
    "overwrite": (lambda v: isinstance(v, bool), "a boolean"),
    "alive_timeout": (valid_timeout, "a positive number of seconds"),
}


def checked_field(payload: dict[str, Any], event: str, key: str, *, required: bool = True) -> Any:
    """Return ``payload[key]`` checked against :data:`FIELDS`; an optional field may be absent or null."""
    if key not in payload and required:
        raise BadRequestError(f"{event} payload has no {key!r} field")
    value = payload.get(key)
    check, what = FIELDS[key]
    if (required or value is not None) and not check(value):
        raise BadRequestError(f"{event} field {key!r} must be {what}, got {quote(value)}")
    return value
