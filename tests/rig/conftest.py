"""Fixtures of the rig tests: a registry, camera nodes in their own processes, a rig, CLI runs.

Every process is started on 127.0.0.1 with ports picked by the system and stopped by its pid in the
fixture's teardown (SIGKILL if it does not stop in time). Tests wait on output lines, replies and
rig events, never on fixed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from helpers.process import LAUNCH, WAIT, Child, dummy_node_args
from plantimager.commons.cameradevice import CameraNode
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.RPC import RPCClient
from plantimager.rig import CallLimits, Rig
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer

SMALL = "320x240"


@RPCClient.register_interface(CameraNode)
class NodeClient(CameraNode, RPCClient):
    """A direct client of a node, to look at what it holds."""


class Process(Child):
    """A ``plantimager`` command in a child process whose output lines can be waited on."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__([*LAUNCH, *args], env=env)

    def finish(self, timeout: float = WAIT) -> tuple[int, str]:
        """Wait for the process to exit; return its status and whole output."""
        code = self.popen.wait(timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:  # the pump ends with None
            self.seen.append(line)
        self.lines.put(None)
        return code, "\n".join(self.seen)

    def stop(self, timeout: float = WAIT) -> int:
        """SIGINT by pid, wait (SIGKILL after ``timeout``); return the exit status."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGINT)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.wait(WAIT)


class Node(Process):
    """``plantimager camera`` with dummy cameras, its own spool and state folder, registered by name."""

    def __init__(
        self, name: str, registry_url: str, home: Path, cameras: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.home = home
        super().__init__(*dummy_node_args(name, registry_url, home, cameras, SMALL), *extra)
        self.address = ""

    def ready(self) -> Node:
        """Wait until the node serves and is registered."""
        self.address = self.wait_for(r"listening on (tcp://\S+)").group(1)
        self.wait_for(rf"^registered as {re.escape(self.name)} with ")
        return self

    def client(self, context: zmq.Context) -> NodeClient:
        """A direct client (close it after use)."""
        return NodeClient(context, self.address, timeout=5000)


@pytest.fixture
def registry(ctx: zmq.Context) -> Iterator[DeviceRegistry]:
    """A registry on 127.0.0.1, port picked by the system."""
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def table(ctx: zmq.Context, registry: DeviceRegistry) -> Iterator[TurntableServer]:
    """A simulated turntable registered as ``table`` (120 deg/s: a sixth of a turn takes 0.5 s)."""
    server = TurntableServer(ctx, "tcp://127.0.0.1:0", backend=DummyTurntable(), speed=120.0)
    with serve_in_thread(server):
        assert server.register_to_registry("turntable", "table", registry.url) == "table"
        yield server
    server.close()


@pytest.fixture
def spawn(registry: DeviceRegistry, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start camera nodes (``spawn("n1", cameras=2)``); every one is stopped by pid at the end."""
    started: list[Process] = []

    def start(name: str, cameras: int = 1, extra: tuple[str, ...] = ()) -> Node:
        node = Node(name, registry.url, tmp_path / "nodes" / name, cameras, extra)
        started.append(node)
        return node

    yield start
    for process in started:
        process.stop(10)


@pytest.fixture
def run_cli() -> Iterator[Callable[..., Process]]:
    """Start ``plantimager`` subcommands; every one is stopped by pid at the end."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(*args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def make_rig(ctx: zmq.Context, registry: DeviceRegistry) -> Iterator[Callable[..., Rig]]:
    """Rigs following the test registry, with short waits; all closed at the end."""
    rigs: list[Rig] = []

    def make(**kwargs) -> Rig:
        kwargs.setdefault("limits", CallLimits(connect=2000, call=2000, capture=20_000, transfer=3000))
        kwargs.setdefault("health_interval", 0.5)
        rig = Rig(registry.url, context=ctx, **kwargs).start()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def held(context: zmq.Context, nodes: list[Node]) -> dict[str, dict[str, list[int]]]:
    """What every node still holds: node name -> data code -> camera indices."""
    out = {}
    for node in nodes:
        with node.client(context) as client:
            out[node.name] = client.pending()
    return out


@pytest.fixture
def pending_of(ctx: zmq.Context) -> Callable[[list[Node]], dict[str, dict[str, list[int]]]]:
    """``pending_of(nodes)``: node name -> data code -> camera indices held."""
    return lambda nodes: held(ctx, nodes)
