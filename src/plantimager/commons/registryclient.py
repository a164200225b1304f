"""The device side of the registry protocol: register, check alive, unregister.

Each call sends one request on a fresh ``REQ`` socket and waits a bounded time for the reply, so a
registry that is away never blocks a device for long; :class:`~plantimager.commons.registration.
RegistryLink` runs these calls on a timer for a server. The names are also importable from
:mod:`plantimager.commons.deviceregistry`, where upstream documents them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import zmq

from .deviceregistry import (
    _MAX_POLL,
    ALIVE_TIMEOUT,
    AliveStatus,
    EventType,
    _message,
    _quote,
    _valid_timeout,
)
from .errors import ProtocolError, RegistryError, ValidationError
from .sockets import make_socket
from .wire import decode_object, encode

__all__ = ["register_device", "send_alive_check", "unregister_device"]

logger = logging.getLogger(__name__)


def _normalise_url(url: str) -> str:
    url = url.strip()
    return url if "://" in url else f"tcp://{url}"


def _wait(sock: zmq.Socket, flag: int, deadline: float, stop: threading.Event | None) -> bool:
    """Poll ``sock`` for ``flag`` until ``deadline``; slices of 100 ms when ``stop`` may cut it short."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return False
        step = min(left, _MAX_POLL) if stop is not None else left
        if sock.poll(max(1, math.ceil(step * 1000)), flag):
            return True


def _request(
    context: zmq.Context,
    url: str,
    message: dict[str, Any],
    timeout_ms: int,
    *,
    stop: threading.Event | None = None,
) -> dict[str, Any] | None:
    """Send one request on a fresh ``REQ`` socket and return the reply object, or None if none came in time.

    Raises
    ------
    RegistryError
        If ``url`` cannot be dialled.
    ProtocolError
        If the reply is not a single-frame JSON object.
    """
    sock = make_socket(context, zmq.REQ, ipv6="://[" in url)
    try:
        try:
            sock.connect(url)
        except zmq.ZMQError as exc:
            raise RegistryError(f"cannot dial the registry at {url!r}: {exc}") from exc
        deadline = time.monotonic() + max(0, timeout_ms) / 1000
        if not _wait(sock, zmq.POLLOUT, deadline, stop):
            return None
        sock.send(encode(message), zmq.NOBLOCK)
        if not _wait(sock, zmq.POLLIN, deadline, stop):
            return None
        frames = sock.recv_multipart(zmq.NOBLOCK)
    finally:
        sock.close(linger=0)
    if len(frames) != 1:
        raise ProtocolError(f"reply must be one frame, got {len(frames)}")
    return decode_object(frames[0])


def _payload_of(reply: dict[str, Any], expected: EventType) -> dict[str, Any] | None:
    """Return the payload of ``reply`` if its event is ``expected`` and its payload an object."""
    payload = reply.get("payload")
    if reply.get("event") != expected or not isinstance(payload, dict):
        return None
    return payload


def _describe(reply: dict[str, Any]) -> str:
    payload = reply.get("payload")
    if reply.get("event") == EventType.ERROR and isinstance(payload, dict):
        return f"ERROR: {payload.get('error')}"
    return f"unexpected reply {_quote(reply)}"


def register_device(
    context: zmq.Context,
    device_type: str,
    addr: str,
    name: str,
    registry_url: str,
    overwrite: bool = False,
    *,
    alive_timeout: float | None = None,
    timeout: int = 5000,
) -> tuple[str, str]:
    """Register a device with the registry at ``registry_url``.

    Parameters
    ----------
    context : zmq.Context
        Context for the short-lived request socket.
    device_type : str
        Kind of device, e.g. ``"camera"``.
    addr : str
        Address peers should dial to reach the device, e.g. ``"tcp://10.10.10.2:10345"``.
    name : str
        Proposed name; the registry may append ``-1``, ``-2``... An empty name proposes ``device_type``.
    registry_url : str
        Address of the registry, e.g. ``"tcp://10.10.10.1:5555"`` (``tcp://`` is added if missing).
    overwrite : bool
        Replace a device already registered under ``name`` instead of taking another name.
    alive_timeout : float, optional
        Seconds the registry keeps the device without an alive check; our registry honours it from the
        start, an upstream one ignores it (its first window is 20 s).
    timeout : int
        Longest wait for the reply, in milliseconds.

    Returns
    -------
    (str, str)
        The accepted name and the uuid that identifies this registration.

    Raises
    ------
    RegistryError
        If no reply came in time, or the reply is not a ``REGISTER_ACK``.
    ValidationError
        If ``alive_timeout`` is not a positive number.
    """
    url = _normalise_url(registry_url)
    payload: dict[str, Any] = {
        "device_type": device_type,
        "addr": addr,
        # Upstream registries mishandle an empty proposal: always propose something.
        "name": name or device_type or "device",
        "overwrite": bool(overwrite),
    }
    if alive_timeout is not None:
        if not _valid_timeout(alive_timeout):
            raise ValidationError(
                f"alive_timeout must be a positive number of seconds, got {alive_timeout!r}"
            )
        payload["alive_timeout"] = alive_timeout
    try:
        reply = _request(context, url, _message(EventType.REGISTER, **payload), timeout)
    except ProtocolError as exc:
        raise RegistryError(f"registry at {url} sent a malformed reply to REGISTER: {exc}") from None
    if reply is None:
        raise RegistryError(f"registry at {url} did not answer REGISTER within {timeout} ms")
    ack = _payload_of(reply, EventType.REGISTER_ACK)
    if ack is None or not isinstance(ack.get("name"), str) or not isinstance(ack.get("uuid"), str):
        raise RegistryError(f"registry at {url} refused REGISTER: {_describe(reply)}")
    if not ack["name"] or not ack["uuid"]:
        raise RegistryError(f"registry at {url} answered REGISTER with an empty name or uuid")
    return ack["name"], ack["uuid"]


def unregister_device(context: zmq.Context, uuid: str, registry_url: str, *, timeout: int = 5000) -> bool:
    """Remove the registration ``uuid`` from the registry at ``registry_url``.

    Parameters
    ----------
    context : zmq.Context
        Context for the short-lived request socket.
    uuid : str
        Identifier returned by :func:`register_device`.
    registry_url : str
        Address of the registry.
    timeout : int
        Longest wait for the reply, in milliseconds.

    Returns
    -------
    bool
        True if the registry knew the device and removed it; False if it did not know it, or could not be
        reached (logged).
    """
    url = _normalise_url(registry_url)
    try:
        reply = _request(context, url, _message(EventType.UNREGISTER, uuid=uuid), timeout)
    except (ProtocolError, RegistryError) as exc:
        logger.warning("UNREGISTER at %s failed: %s", url, exc)
        return False
    if reply is None:
        logger.warning("registry at %s did not answer UNREGISTER within %d ms", url, timeout)
        return False
    ack = _payload_of(reply, EventType.ACK)
    if ack is None:
        logger.warning("registry at %s: %s", url, _describe(reply))
        return False
    return ack.get("success") is True


def send_alive_check(
    context: zmq.Context,
    uuid: str,
    registry_url: str,
    alive_timeout: float = ALIVE_TIMEOUT,
    *,
    timeout: int = 5000,
) -> AliveStatus:
    """Tell the registry that the device ``uuid`` is alive, and learn whether the registry knows it.

    Parameters
    ----------
    context : zmq.Context
        Context for the short-lived request socket.
    uuid : str
        Identifier returned by :func:`register_device`.
    registry_url : str
        Address of the registry.
    alive_timeout : float
        Seconds the registry should keep the device from now on without another check.
    timeout : int
        Longest wait for the reply, in milliseconds.

    Returns
    -------
    AliveStatus
        ``OK`` if the registry knows the device, ``UNKNOWN`` for any other reply (register again),
        ``UNREACHABLE`` if no reply came in time.
    """
    url = _normalise_url(registry_url)
    message = _message(EventType.CHECK_ALIVE, uuid=uuid, alive_timeout=alive_timeout)
    try:
        reply = _request(context, url, message, timeout)
    except ProtocolError as exc:
        logger.warning("registry at %s sent a malformed reply to CHECK_ALIVE: %s", url, exc)
        return AliveStatus.UNKNOWN
    except RegistryError as exc:
        logger.warning("%s", exc)
        return AliveStatus.UNREACHABLE
    if reply is None:
        return AliveStatus.UNREACHABLE
    ack = _payload_of(reply, EventType.ACK)
    return AliveStatus.OK if ack is not None and ack.get("success") is True else AliveStatus.UNKNOWN
