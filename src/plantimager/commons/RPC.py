"""Remote Procedure Call framework over ZeroMQ.

Exposes methods (results as JSON or as raw binary buffers), properties and publish-subscribe
signals of an object to clients on the network, with the wire protocol of the upstream
plantimager project (``docs/protocol.md``). This module gathers the public names; each lives in
a module of its own.

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

from .client import RPCClient, RPCSignalReceiver
from .properties import RPCProperty
from .protocol import NoResult, RPCEvents
from .server import RPCServer
from .signals import RPCSignal

__all__ = [
    "NoResult",
    "RPCClient",
    "RPCEvents",
    "RPCProperty",
    "RPCServer",
    "RPCSignal",
    "RPCSignalReceiver",
]
