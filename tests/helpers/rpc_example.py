"""A small interface, its server and its client, shared by the RPC tests."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import zmq

from plantimager.commons.RPC import RPCClient, RPCProperty, RPCServer, RPCSignal


class Thermostat(ABC):
    """An interface with every kind of member."""

    targetChanged = RPCSignal(float)
    modeChanged = RPCSignal(str)
    pairChanged = RPCSignal(tuple[int, int])

    @RPCProperty(notify=targetChanged)
    @abstractmethod
    def target(self) -> float: ...

    @target.setter
    @abstractmethod
    def target(self, value: float) -> None: ...

    @RPCProperty(notify=pairChanged)
    @abstractmethod
    def pair(self) -> tuple[int, int]: ...

    @pair.setter
    @abstractmethod
    def pair(self, value: tuple[int, int]) -> None: ...

    @RPCProperty
    @abstractmethod
    def serial(self) -> str: ...

    @abstractmethod
    def echo(self, message: str) -> str: ...

    @abstractmethod
    def add(self, a: int, b: int = 10) -> int: ...

    @abstractmethod
    def blob(self, size: int = 4) -> tuple[memoryview, dict]: ...

    @abstractmethod
    def fail(self, text: str) -> None: ...

    @abstractmethod
    def slow(self, release: bool = False) -> str: ...

    @abstractmethod
    def emit_many(self, count: int) -> int: ...


class ThermostatServer(Thermostat, RPCServer):
    """The concrete server."""

    def __init__(self, context: zmq.Context, url: str = "tcp://127.0.0.1:0", **kwargs) -> None:
        RPCServer.__init__(self, context, url, **kwargs)
        self._target = 20.0
        self._pair = (1, 2)
        self.release_slow = threading.Event()
        self.slow_entered = threading.Event()
        self.calls = 0

    @RPCProperty(notify=Thermostat.targetChanged)
    def target(self) -> float:
        return self._target

    @target.setter
    def target(self, value: float) -> None:
        if value != self._target:
            self._target = value
            self.targetChanged.emit(value)

    @RPCProperty(notify=Thermostat.pairChanged)
    def pair(self) -> tuple[int, int]:
        return self._pair

    @pair.setter
    def pair(self, value: tuple[int, int]) -> None:
        self._pair = value
        self.pairChanged.emit(value)

    @RPCProperty
    def serial(self) -> str:
        return "TH-001"

    @RPCServer.register_method_json(timeout=2000)
    def echo(self, message: str) -> str:
        self.calls += 1
        return f"Echo: {message}"

    @RPCServer.register_method_json(role="viewer")  # changes nothing: a viewer may call it
    def add(self, a: int, b: int = 10) -> int:
        return a + b

    @RPCServer.register_method_buffer(timeout=5000)
    def blob(self, size: int = 4) -> tuple[memoryview, dict]:
        data = bytes(range(256)) * (size // 256 + 1)
        return memoryview(data)[:size], {"size": size, "type": "raw"}

    @RPCServer.register_method_json
    def fail(self, text: str) -> None:
        raise ValueError(text)

    @RPCServer.register_method_json(timeout=100)
    def slow(self, release: bool = False) -> str:
        self.slow_entered.set()
        self.release_slow.wait(5)
        return "late"

    @RPCServer.register_method_json
    def emit_many(self, count: int) -> int:
        for i in range(count):
            self.modeChanged.emit(f"m{i}")
        return count

    def not_exposed(self) -> str:
        return "secret"


@RPCClient.register_interface(Thermostat)
class ThermostatClient(Thermostat, RPCClient):
    """The client proxy."""


@contextmanager
def serving(server: RPCServer) -> Iterator[threading.Thread]:
    """Run ``server.serve_forever`` in a thread; stop it and join on exit."""
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.stop_server()
        thread.join(timeout=10)
        assert not thread.is_alive(), "server thread did not stop"
