"""The RPC core: expose an object's methods, properties and signals over ZeroMQ, and drive them remotely.

=================  ===============================================================================
module             what it holds
=================  ===============================================================================
:mod:`.server`     :class:`RPCServerBase`, which serves requests (joining a registry is added above,
                   by :class:`plantimager.commons.registry.RPCServer`)
:mod:`.client`     :class:`RPCClient` and the signal receiver thread :class:`RPCSignalReceiver`
:mod:`.signals`    :class:`RPCSignal`, typed publish-subscribe signals
:mod:`.properties` :class:`RPCProperty`, properties tied to a change signal
:mod:`.members`    which members of a class are remotely reachable, and how
:mod:`.protocol`   the protocol's events, :class:`NoResult` and error replies
:mod:`.wire`       JSON encoding of messages
:mod:`.sockets`    the one place where sockets are made and their options set (CURVE keys included)
:mod:`.guard`      the ZAP handler of secured servers, and the role behind each request
:mod:`.access`     which role each request needs
:mod:`.refusals`   the log of refused connections and requests
:mod:`.address`    parsing and advertising ``tcp://host:port`` endpoints
:mod:`.typecheck`  checking and coercing values against type hints
=================  ===============================================================================

This package imports nothing of plantimager but :mod:`plantimager.commons.security`,
:mod:`plantimager.commons.errors` and :mod:`plantimager.commons.watchdog`.
"""

from .client import RPCClient, RPCSignalReceiver
from .properties import RPCProperty
from .protocol import NoResult, RPCEvents
from .server import RPCServerBase
from .signals import RPCSignal

__all__ = [
    "NoResult",
    "RPCClient",
    "RPCEvents",
    "RPCProperty",
    "RPCServerBase",
    "RPCSignal",
    "RPCSignalReceiver",
]
