"""The pytest plugin of the camera test kit (entry point ``plantimager`` in group ``pytest11``).

Installing plantimager registers it, so any pytest run gets:

Markers
-------
plantimager_contract
    Set on every test inherited from a :mod:`plantimager.testing.contracts` class
    (``pytest -m plantimager_contract`` runs only those).
plantimager_over_rpc
    Set on the tests of the over-RPC contract classes.

Fixtures
--------
plantimager_context
    A fresh ZeroMQ context; the test fails if a socket of it is left open.
plantimager_serve
    A function ``serve(server, client_cls=NodeClient)`` that serves an ``RPCServer`` in a thread and
    returns a client proxy; every client is closed and every server stopped and joined after the test.

Without plugin auto-loading, enable it with ``-p plantimager.testing.plugin`` or
``pytest_plugins = ["plantimager.testing.plugin"]`` in a top-level ``conftest.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from plantimager.commons.RPC import RPCClient, RPCServer

from .fixtures import NodeClient, checked_context, served_client

__all__ = ["plantimager_context", "plantimager_serve", "pytest_configure"]

# The contract module is imported by the user's test modules, after this plugin: have pytest rewrite
# its assertions so failures show the compared values.
pytest.register_assert_rewrite("plantimager.testing.contracts", "plantimager.testing.turntable")


def pytest_configure(config: pytest.Config) -> None:
    """Register the kit's markers."""
    config.addinivalue_line(
        "markers", "plantimager_contract: a test inherited from a plantimager.testing contract class"
    )
    config.addinivalue_line(
        "markers", "plantimager_over_rpc: a plantimager contract test run through an RPC client"
    )


@pytest.fixture
def plantimager_context() -> Iterator[zmq.Context]:
    """A fresh ZeroMQ context; the test fails if any of its sockets is left open afterwards."""
    with checked_context() as context:
        yield context


@pytest.fixture
def plantimager_serve(plantimager_context: zmq.Context) -> Iterator[Callable[..., Any]]:
    """Serve RPC servers in threads for the test and return client proxies to them.

    Servers built on ``plantimager_context`` are stopped before that context is checked for
    leaked sockets, whatever the order in which a test asks for the two fixtures.

    Returns
    -------
    callable
        ``serve(server, client_cls=NodeClient) -> client``: ``server`` is an ``RPCServer`` built on
        ``tcp://127.0.0.1:0`` and not serving yet. After the test, the clients are closed and the
        servers stopped and joined, most recent first.
    """
    with contextlib.ExitStack() as stack:

        def serve(server: RPCServer, client_cls: type[RPCClient] = NodeClient) -> Any:
            client, _ = stack.enter_context(served_client(server, client_cls))
            return client

        yield serve
