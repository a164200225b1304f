"""Keeps an RPC server registered with a device registry, off the request path.

A :class:`RegistryLink` thread registers the server, reports liveness (``CHECK_ALIVE``) on a
timer, re-registers when the registry no longer knows it (a registry restart) and retries with
back-off while the registry is unreachable. The server's serve loop never waits for any of this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from ..errors import RegistryError
from ..security import KeyRing
from .device import register_device, send_alive_check, unregister_device
from .message import AliveStatus

__all__ = ["RegistryLink"]

logger = logging.getLogger(__name__)

#: How long one registry round trip may take, in ms.
REQUEST_TIMEOUT_MS = 2000
#: Upstream registries forget a device 20 s after REGISTER unless it checks in.
UPSTREAM_INITIAL_WINDOW = 20.0
MAX_RETRY_DELAY = 5.0


class RegistryLink(threading.Thread):
    """Registration and heartbeat of one server with one registry.

    Parameters
    ----------
    context : zmq.Context
        Context for the short-lived request sockets.
    registry_url : str
        ``tcp://host:port`` of the registry.
    device_type, name, addr : str
        What to register: type, proposed name, advertised address.
    overwrite : bool
        Take the name even if another device holds it.
    alive_timeout : float
        Seconds the registry may wait for a heartbeat before forgetting the device.
    on_change : callable
        Called with ``(name, uuid, registry_url)`` whenever the registration changes (empty
        strings when unregistered).
    keys : KeyRing, optional
        Talk CurveZMQ to the registry with the server's keys.
    """

    def __init__(
        self,
        context: zmq.Context,
        registry_url: str,
        *,
        device_type: str,
        name: str,
        addr: str,
        overwrite: bool,
        alive_timeout: float,
        on_change: Callable[[str, str, str], None],
        keys: KeyRing | None = None,
    ) -> None:
        super().__init__(name=f"registry-link-{name}", daemon=True)
        self.context = context
        self.registry_url = registry_url
        self.device_type = device_type
        self.proposed_name = name
        self.addr = addr
        self.overwrite = overwrite
        self.alive_timeout = alive_timeout
        self._on_change = on_change
        self.keys = keys
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.name = ""
        self.uuid = ""
        #: Seconds between heartbeats: well inside both our timeout and upstream's first window.
        self.interval = max(0.05, min(float(alive_timeout), UPSTREAM_INITIAL_WINDOW) / 4)

    def register_now(self, timeout_ms: int = REQUEST_TIMEOUT_MS) -> bool:
        """Try to register once, now. Returns True on success; failures are logged."""
        try:
            name, uuid = register_device(
                self.context,
                self.device_type,
                self.addr,
                self.name or self.proposed_name,
                self.registry_url,
                overwrite=self.overwrite,
                alive_timeout=self.alive_timeout,
                timeout=timeout_ms,
                keys=self.keys,
            )
        except RegistryError as exc:
            logger.warning("could not register %s with %s: %s", self.proposed_name, self.registry_url, exc)
            return False
        with self._lock:
            previous = self.name
            self.name, self.uuid = name, uuid
        if previous and previous != name:
            logger.warning("registry %s renamed this device from %s to %s", self.registry_url, previous, name)
        elif name != self.proposed_name:
            logger.info("registry %s accepted %s as %s", self.registry_url, self.proposed_name, name)
        else:
            logger.info("registered as %s of type %s with %s", name, self.device_type, self.registry_url)
        self._on_change(name, uuid, self.registry_url)
        return True

    def run(self) -> None:
        delay = self.interval
        while not self._stopping.wait(delay):
            if not self.uuid:
                ok = self.register_now()
                delay = self.interval if ok else min(MAX_RETRY_DELAY, max(delay * 2, self.interval))
                continue
            status = send_alive_check(
                self.context,
                self.uuid,
                self.registry_url,
                self.alive_timeout,
                timeout=REQUEST_TIMEOUT_MS,
                keys=self.keys,
            )
            if status is AliveStatus.OK:
                delay = self.interval
            elif status is AliveStatus.UNKNOWN:
                logger.warning(
                    "registry %s no longer knows %s; registering again", self.registry_url, self.name
                )
                self.register_now()
                delay = self.interval
            else:
                logger.warning("registry %s unreachable; still serving, will retry", self.registry_url)
                delay = min(MAX_RETRY_DELAY, max(delay * 2, self.interval))

    def stop(self, *, unregister: bool) -> None:
        """Stop the heartbeat and, if asked, unregister (bounded wait)."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=REQUEST_TIMEOUT_MS / 1000 * 2 + 1)
        with self._lock:
            uuid, self.uuid, self.name = self.uuid, "", ""
        if (
            unregister
            and uuid
            and not unregister_device(
                self.context, uuid, self.registry_url, timeout=REQUEST_TIMEOUT_MS, keys=self.keys
            )
        ):
            logger.warning("registry %s did not confirm unregistration", self.registry_url)
        self._on_change("", "", "")
