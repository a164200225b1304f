"""Keys, trust and roles: what secures the RPC core, the registry and every socket (CurveZMQ).

=================  ===============================================================================
module             what it holds
=================  ===============================================================================
:mod:`.roles`      :class:`Role`: viewer, device, operator
:mod:`.keyfiles`   CURVE key files in pyzmq's certificate format (the secret one mode 0600)
:mod:`.keyring`    :class:`KeyRing`: this host's key pair and the keys it trusts, from a key folder
:mod:`.curve`      :class:`Curve`: the keys one socket is set up with
:mod:`.exposure`   the rule that keeps a server without keys on loopback unless told ``insecure``
=================  ===============================================================================

This package sits below :mod:`plantimager.commons.rpc` and imports nothing else of plantimager but
:mod:`plantimager.commons.errors`.
"""

from .curve import Curve
from .exposure import check_exposure, default_bind, is_loopback
from .keyring import KEYS_ENV, KeyRing, TrustEntry, default_keys_dir, key_id, keys_dir
from .roles import Role

__all__ = [
    "KEYS_ENV",
    "Curve",
    "KeyRing",
    "Role",
    "TrustEntry",
    "check_exposure",
    "default_bind",
    "default_keys_dir",
    "is_loopback",
    "key_id",
    "keys_dir",
]
