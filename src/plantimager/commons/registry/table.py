"""The registry's table of devices: names, uuids, expiries, the change sequence, and who may replace what.

:class:`DeviceTable` holds the state of a :class:`~plantimager.commons.registry.server.DeviceRegistry` and
changes it; each change gets the next sequence number and is returned as a :class:`Change` for the
registry to publish. Thread-safe.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from dataclasses import dataclass

from .message import EventType

__all__ = ["Change", "DeviceTable", "Entry"]


@dataclass(slots=True)
class Entry:
    """One registered device; ``public_key`` is the key it registered with on a secured registry."""

    device_type: str
    addr: str
    uuid: str
    expiry: float
    public_key: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """A device added or removed, with the sequence number of the change."""

    event: EventType
    name: str
    device_type: str
    addr: str
    seq: int
    public_key: str = ""


class DeviceTable:
    """The devices of a registry, by name, and the sequence number of the last change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self._devices: dict[str, Entry] = {}
        self._by_uuid: dict[str, str] = {}

    def snapshot(self) -> dict[str, tuple[str, str]]:
        """Device name -> ``(device_type, addr)``."""
        with self.lock:
            return {name: (e.device_type, e.addr) for name, e in self._devices.items()}

    def listing(self, device_type: str | None) -> tuple[list[dict[str, str]], int]:
        """The devices (of ``device_type`` if given) by name, as ``LIST_ACK`` sends them, and the sequence."""
        with self.lock:
            devices = []
            for name, e in sorted(self._devices.items()):
                if device_type is None or e.device_type == device_type:
                    item = {"name": name, "device_type": e.device_type, "addr": e.addr}
                    if e.public_key:
                        item["public_key"] = e.public_key
                    devices.append(item)
            return devices, self.seq

    def next_expiry(self) -> float:
        """The monotonic time at which the next device expires (``inf`` without devices)."""
        with self.lock:
            return min((e.expiry for e in self._devices.values()), default=math.inf)

    def _remove(self, name: str) -> Change:
        # Caller holds the lock.
        entry = self._devices.pop(name)
        self._by_uuid.pop(entry.uuid, None)
        self.seq += 1
        return Change(
            EventType.DEVICE_REMOVED, name, entry.device_type, entry.addr, self.seq, entry.public_key
        )

    def prune(self, now: float) -> list[Change]:
        """Remove the devices whose alive timeout has passed."""
        with self.lock:
            expired = [name for name, e in self._devices.items() if e.expiry <= now]
            return [self._remove(name) for name in expired]

    def register(
        self,
        device_type: str,
        addr: str,
        proposed: str,
        *,
        overwrite: bool,
        timeout: float,
        public_key: str = "",
        may_replace_others: bool = True,
    ) -> tuple[str, str, list[Change]]:
        """Add a device; return its accepted name, its uuid and the changes.

        Upstream's conflict rule: a registration from a known address replaces that entry, and a name
        proposed with ``overwrite`` replaces the entry of that name. On a secured registry an entry is
        replaced only by the same key, or by a key allowed to replace others (an operator's): a device
        cannot push another device out of the table or take its name.
        """
        with self.lock:
            replaced = [
                name
                for name, e in self._devices.items()
                if (e.addr == addr or (overwrite and proposed and name == proposed))
                and (may_replace_others or e.public_key == public_key)
            ]
            changes = [self._remove(name) for name in replaced]
            base = name = proposed or device_type
            for i in itertools.count(1):
                if name not in self._devices:
                    break
                name = f"{base}-{i}"
            device_uuid = str(uuid.uuid1())
            self._devices[name] = Entry(
                device_type, addr, device_uuid, time.monotonic() + timeout, public_key
            )
            self._by_uuid[device_uuid] = name
            self.seq += 1
            changes.append(Change(EventType.DEVICE_ADDED, name, device_type, addr, self.seq, public_key))
            return name, device_uuid, changes

    def unregister(
        self, device_uuid: str, *, public_key: str = "", may_act_for_others: bool = True
    ) -> tuple[bool, list[Change]]:
        """Remove the device of ``device_uuid``; whether it was known, and the changes.

        As in :meth:`register`, on a secured registry only the key that registered an entry, or one
        allowed to act for others, may remove it; to any other key the uuid is unknown.
        """
        with self.lock:
            name = self._owned(device_uuid, public_key, may_act_for_others)
            return name is not None, [self._remove(name)] if name is not None else []

    def check_alive(
        self, device_uuid: str, timeout: float, *, public_key: str = "", may_act_for_others: bool = True
    ) -> bool:
        """Push back the expiry of the device of ``device_uuid``; whether it was known (see
        :meth:`unregister` for who may)."""
        with self.lock:
            name = self._owned(device_uuid, public_key, may_act_for_others)
            if name is not None:
                self._devices[name].expiry = time.monotonic() + timeout
            return name is not None

    def _owned(self, device_uuid: str, public_key: str, may_act_for_others: bool) -> str | None:
        # Lock held. The name of the entry of ``device_uuid`` if that key may act on it.
        name = self._by_uuid.get(device_uuid)
        if name is None or may_act_for_others or self._devices[name].public_key == public_key:
            return name
        return None
