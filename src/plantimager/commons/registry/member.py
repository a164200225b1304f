"""``RPCServer``: an RPC server that can join a device registry.

The RPC core (:class:`~plantimager.commons.rpc.server.RPCServerBase`) serves requests and knows nothing of
the registry; this subclass adds upstream's :meth:`RPCServer.register_to_registry`, keeping the registration
alive in a :class:`~plantimager.commons.registry.link.RegistryLink` thread, off the request path. It is the
``RPCServer`` that :mod:`plantimager.commons.RPC` documents.
"""

from __future__ import annotations

from ..rpc.server import RPCServerBase
from .link import RegistryLink

__all__ = ["RPCServer"]


class RPCServer(RPCServerBase):
    """Serve an object's methods, properties and signals, and optionally join a device registry.

    Takes the same parameters as :class:`~plantimager.commons.rpc.server.RPCServerBase`.
    """

    _registry: RegistryLink | None = None

    def register_to_registry(self, type_: str, name: str, registry_url: str, overwrite: bool = True) -> str:
        """Register with the device registry at ``registry_url`` as a device of type ``type_``.

        The registry may change ``name`` to keep names unique; the accepted name is returned. A
        background thread then reports liveness to the registry, re-registers when the registry
        forgets this server (e.g. after a restart) and keeps retrying while it is unreachable.
        The registry is never contacted while requests are served, and serving never stops
        because the registry is away. A secured server (``keys``) talks CurveZMQ to the registry
        with its own keys, expecting the registry's key to be ``keys.registry_key``.

        Parameters
        ----------
        type_ : str
            Device type, e.g. ``"camera"``.
        name : str
            Proposed name.
        registry_url : str
            ``tcp://<host>:<port>`` of the registry.
        overwrite : bool
            Take the name even if another device holds it.

        Returns
        -------
        str
            The accepted name, or ``""`` if the registry could not be reached yet (registration
            then continues in the background).
        """
        if self._registry is not None:
            self._registry.stop(unregister=True)
        link = RegistryLink(
            self.context,
            registry_url,
            device_type=type_,
            name=name,
            addr=self.address,
            overwrite=overwrite,
            alive_timeout=self.alive_timeout,
            on_change=self._registration_changed,
            keys=self.keys,
        )
        self._registry = link
        link.register_now()
        link.start()
        return self.name

    def _registration_changed(self, name: str, uuid: str, registry_url: str) -> None:
        self.name, self.uuid, self.registry_addr = name, uuid, registry_url

    def _on_stop(self) -> None:
        super()._on_stop()
        if self._registry is not None:
            self._registry.stop(unregister=True)
            self._registry = None
