"""Contract tests and helpers for checking camera implementations (a pytest plugin).

Subclass a contract, give it one fixture and run pytest::

    import pytest
    from plantimager.testing import NodeContract

    class TestMyNode(NodeContract):
        @pytest.fixture
        def node(self):
            ...

Contracts: :class:`CameraContract`, :class:`NodeContract` and their over-RPC variants
:class:`CameraOverRPC`, :class:`NodeOverRPC` (see :mod:`plantimager.testing.contracts`);
:class:`TurntableContract` and :class:`TurntableOverRPC` (see :mod:`plantimager.testing.turntable`). Helpers:
:func:`serve_in_thread`, :func:`served_client`, :class:`NodeClient`, :func:`client_class`,
:func:`checked_context` (see :mod:`plantimager.testing.fixtures`).

Importing this package imports nothing else: each name is loaded from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contracts import CameraContract, CameraOverRPC, NodeContract, NodeOverRPC
    from .fixtures import (
        NodeClient,
        ServedServer,
        checked_context,
        client_class,
        open_client,
        serve_in_thread,
        served_client,
    )
    from .turntable import TurntableContract, TurntableOverRPC

__all__ = [
    "CameraContract",
    "CameraOverRPC",
    "NodeClient",
    "NodeContract",
    "NodeOverRPC",
    "ServedServer",
    "TurntableContract",
    "TurntableOverRPC",
    "checked_context",
    "client_class",
    "open_client",
    "serve_in_thread",
    "served_client",
]

_HOMES = {
    "CameraContract": "contracts",
    "CameraOverRPC": "contracts",
    "NodeContract": "contracts",
    "TurntableContract": "turntable",
    "TurntableOverRPC": "turntable",
    "NodeOverRPC": "contracts",
    "NodeClient": "fixtures",
    "ServedServer": "fixtures",
    "checked_context": "fixtures",
    "client_class": "fixtures",
    "open_client": "fixtures",
    "serve_in_thread": "fixtures",
    "served_client": "fixtures",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
