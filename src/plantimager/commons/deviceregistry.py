"""The device registry, under the name upstream documents.

A thin face over :mod:`plantimager.commons.registry`, where the registry server, the device side, the
watcher and the messages they share each live in a module of their own.

Classes
-------
DeviceRegistry
    The registry: a thread serving the registry protocol, with live change events.

Functions
---------
register_device
    Register a device with a registry; returns the accepted name and a uuid.
unregister_device
    Remove a registration.
"""

from __future__ import annotations

from .registry import DeviceRegistry, register_device, unregister_device

__all__ = ["DeviceRegistry", "register_device", "unregister_device"]
