"""Remote Procedure Call framework over ZeroMQ.

Exposes methods (results as JSON or as raw binary buffers), properties and publish-subscribe
signals of an object to clients on the network, with the wire protocol of the upstream
plantimager project (``docs/protocol.md``). This module is the documented face of the framework: it
gathers the public names from :mod:`plantimager.commons.rpc`, where each lives in a module of its own, and
``RPCServer`` from :mod:`plantimager.commons.registry`, which adds joining a device registry to the core.

Classes
-------
NoResult
    The falsy outcome of a failed remote operation, with ``error`` and ``traceback``.
RPCSignal
    Publish-subscribe signal with typed arguments.
RPCProperty
    Property that can be proxied, tied to a change signal.
RPCClient
    Client proxy of a server; subclass it with an interface and :meth:`RPCClient.register_interface`.
RPCServer
    Serves an object's methods, properties and signals.
RPCEvents
    The ``event`` values of the protocol.
RPCSignalReceiver
    The client thread that receives signals.
"""

from __future__ import annotations

from .registry.member import RPCServer
from .rpc import NoResult, RPCClient, RPCEvents, RPCProperty, RPCSignal, RPCSignalReceiver

__all__ = [
    "NoResult",
    "RPCClient",
    "RPCEvents",
    "RPCProperty",
    "RPCServer",
    "RPCSignal",
    "RPCSignalReceiver",
]
