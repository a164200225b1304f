"""The device registry: devices announce themselves, controllers find them and follow changes.

=================  ===============================================================================
module             what it holds
=================  ===============================================================================
:mod:`.message`    event names, message shapes and the one request/reply exchange all sides use
:mod:`.server`     :class:`DeviceRegistry`, the registry itself
:mod:`.table`      the registry's table of devices, and who may replace an entry
:mod:`.device`     the device side: :func:`register_device`, :func:`send_alive_check`,
                   :func:`unregister_device`
:mod:`.link`       :class:`RegistryLink`, which keeps one server registered, off its request path
:mod:`.member`     :class:`RPCServer`, the RPC server that can join a registry
:mod:`.watcher`    the controller side: :func:`list_devices` and :class:`RegistryWatcher`
=================  ===============================================================================

This package sits above :mod:`plantimager.commons.rpc` and imports nothing else of plantimager but
:mod:`plantimager.commons.security`, :mod:`plantimager.commons.errors` and
:mod:`plantimager.commons.watchdog`.
"""

from .device import register_device, send_alive_check, unregister_device
from .link import RegistryLink
from .member import RPCServer
from .message import (
    ALIVE_TIMEOUT,
    DEFAULT_REGISTRY_PORT,
    HEARTBEAT_INTERVAL,
    AliveStatus,
    DeviceInfo,
    EventType,
)
from .server import DeviceRegistry
from .watcher import RegistryWatcher, list_devices

__all__ = [
    "ALIVE_TIMEOUT",
    "DEFAULT_REGISTRY_PORT",
    "HEARTBEAT_INTERVAL",
    "AliveStatus",
    "DeviceInfo",
    "DeviceRegistry",
    "EventType",
    "RPCServer",
    "RegistryLink",
    "RegistryWatcher",
    "list_devices",
    "register_device",
    "send_alive_check",
    "unregister_device",
]
