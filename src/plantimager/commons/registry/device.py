"""The device side of the registry protocol: register, check alive, unregister.

Each call sends one request on a fresh ``REQ`` socket and waits a bounded time for the reply, so a
registry that is away never blocks a device for long; :class:`~plantimager.commons.registry.link.RegistryLink`
runs these calls on a timer for a server. :func:`register_device` and :func:`unregister_device` are also
importable from :mod:`plantimager.commons.deviceregistry`, where upstream documents them.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from ..errors import ProtocolError, RegistryError, ValidationError
from ..security import KeyRing
from .message import (
    ALIVE_TIMEOUT,
    AliveStatus,
    EventType,
    describe,
    make_message,
    normalise_url,
    payload_of,
    request,
    valid_timeout,
)

__all__ = ["register_device", "send_alive_check", "unregister_device"]

logger = logging.getLogger(__name__)


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
    keys: KeyRing | None = None,
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
    keys : KeyRing, optional
        Register over CurveZMQ with this host's keys (the registry's key is ``keys.registry_key``).

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
    url = normalise_url(registry_url)
    payload: dict[str, Any] = {
        "device_type": device_type,
        "addr": addr,
        # Upstream registries mishandle an empty proposal: always propose something.
        "name": name or device_type or "device",
        "overwrite": bool(overwrite),
    }
    if alive_timeout is not None:
        if not valid_timeout(alive_timeout):
            raise ValidationError(
                f"alive_timeout must be a positive number of seconds, got {alive_timeout!r}"
            )
        payload["alive_timeout"] = alive_timeout
    try:
        reply = request(context, url, make_message(EventType.REGISTER, **payload), timeout, keys=keys)
    except ProtocolError as exc:
        raise RegistryError(f"registry at {url} sent a malformed reply to REGISTER: {exc}") from None
    if reply is None:
        raise RegistryError(f"registry at {url} did not answer REGISTER within {timeout} ms")
    ack = payload_of(reply, EventType.REGISTER_ACK)
    if ack is None or not isinstance(ack.get("name"), str) or not isinstance(ack.get("uuid"), str):
        raise RegistryError(f"registry at {url} refused REGISTER: {describe(reply)}")
    if not ack["name"] or not ack["uuid"]:
        raise RegistryError(f"registry at {url} answered REGISTER with an empty name or uuid")
    return ack["name"], ack["uuid"]


def unregister_device(
    context: zmq.Context, uuid: str, registry_url: str, *, timeout: int = 5000, keys: KeyRing | None = None
) -> bool:
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
    keys : KeyRing, optional
        Talk CurveZMQ with this host's keys.

    Returns
    -------
    bool
        True if the registry knew the device and removed it; False if it did not know it, or could not be
        reached (logged).
    """
    url = normalise_url(registry_url)
    try:
        reply = request(context, url, make_message(EventType.UNREGISTER, uuid=uuid), timeout, keys=keys)
    except (ProtocolError, RegistryError) as exc:
        logger.warning("UNREGISTER at %s failed: %s", url, exc)
        return False
    if reply is None:
        logger.warning("registry at %s did not answer UNREGISTER within %d ms", url, timeout)
        return False
    ack = payload_of(reply, EventType.ACK)
    if ack is None:
        logger.warning("registry at %s: %s", url, describe(reply))
        return False
    return ack.get("success") is True


def send_alive_check(
    context: zmq.Context,
    uuid: str,
    registry_url: str,
    alive_timeout: float = ALIVE_TIMEOUT,
    *,
    timeout: int = 5000,
    keys: KeyRing | None = None,
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
    keys : KeyRing, optional
        Talk CurveZMQ with this host's keys.

    Returns
    -------
    AliveStatus
        ``OK`` if the registry knows the device, ``UNKNOWN`` for any other reply (register again),
        ``UNREACHABLE`` if no reply came in time.
    """
    url = normalise_url(registry_url)
    message = make_message(EventType.CHECK_ALIVE, uuid=uuid, alive_timeout=alive_timeout)
    try:
        reply = request(context, url, message, timeout, keys=keys)
    except ProtocolError as exc:
        logger.warning("registry at %s sent a malformed reply to CHECK_ALIVE: %s", url, exc)
        return AliveStatus.UNKNOWN
    except RegistryError as exc:
        logger.warning("%s", exc)
        return AliveStatus.UNREACHABLE
    if reply is None:
        return AliveStatus.UNREACHABLE
    ack = payload_of(reply, EventType.ACK)
    return AliveStatus.OK if ack is not None and ack.get("success") is True else AliveStatus.UNKNOWN
