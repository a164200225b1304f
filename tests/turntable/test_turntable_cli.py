"""``plantimager turntable``: serves a turntable, registers it like a camera node, stops on SIGINT."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import zmq

from helpers.process import LAUNCH, WAIT, Child
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.registry import list_devices
from plantimager.commons.turntabledevice import TurntableClient, wait_settled

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry(ctx: zmq.Context) -> Iterator[DeviceRegistry]:
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start() -> Iterator:
    started: list[Child] = []

    def run(*args: str) -> Child:
        child = Child([*LAUNCH, "turntable", *args])
        started.append(child)
        return child

    yield run
    for child in started:
        child.kill()


def test_a_served_turntable_registers_turns_and_stops(ctx, registry, start):
    child = start(
        "--registry", registry.url, "--bind", "tcp://127.0.0.1:0", "--name", "table7", "--speed", "360"
    )
    address = child.wait_for(r"^turntable \(dummy, 360 deg/s\) listening on (tcp://\S+)$").group(1)
    child.wait_for(r"^registered as table7 with ")
    devices = list_devices(ctx, registry.url, device_type="turntable")
    assert [(d.name, d.addr) for d in devices] == [("table7", address)]
    table = TurntableClient(ctx, address, timeout=5000)
    try:
        assert table.speed == 360.0
        assert wait_settled(table, table.move_to(270.0), 10) == 270.0  # the shorter way: -90 deg
        assert wait_settled(table, table.home(), 10) == 0.0
    finally:
        table.close()
    os.kill(child.pid, signal.SIGINT)
    assert child.popen.wait(WAIT) == 0
    child.wait_for(r"^turntable stopped$")
    assert list_devices(ctx, registry.url, device_type="turntable") == []  # unregistered on the way out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "stepper"), "unknown turntable backend 'stepper'; available: dummy"),
        (("--speed", "0"), "Invalid value for '--speed'"),
        (("--name", "bad name"), "Invalid value for '--name'"),
    ],
)
def test_bad_options_are_refused_with_their_reason(registry, start, args, message):
    child = start("--registry", registry.url, "--bind", "tcp://127.0.0.1:0", *args)
    code = child.popen.wait(WAIT)
    child.wait_for(message)
    assert code in (1, 2)
