"""The turntable contracts of the test kit, run against the simulated turntable, in-process and over RPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from plantimager.testing import TurntableContract, TurntableOverRPC
from plantimager.testing.fixtures import LOOPBACK_URL
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer


@pytest.fixture
def table_server(plantimager_context: zmq.Context) -> Iterator[TurntableServer]:
    """A simulated turntable server on loopback, not serving."""
    server = TurntableServer(plantimager_context, LOOPBACK_URL, backend=DummyTurntable())
    try:
        yield server
    finally:
        server.close()


class TestSimulatedTurntable(TurntableContract):
    @pytest.fixture
    def turntable(self, table_server: TurntableServer) -> TurntableServer:
        return table_server


class TestSimulatedTurntableOverRPC(TurntableOverRPC):
    @pytest.fixture
    def local_turntable(self, table_server: TurntableServer) -> TurntableServer:
        return table_server
