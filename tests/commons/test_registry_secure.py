"""A secured registry: viewers list and follow, devices register with the key they prove they hold."""

from __future__ import annotations

import pytest
import zmq

from helpers.keys import RigKeys
from helpers.rpc_example import ThermostatClient, ThermostatServer, serving
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import RegistryError
from plantimager.commons.registry import (
    AliveStatus,
    RegistryWatcher,
    list_devices,
    register_device,
    send_alive_check,
    unregister_device,
)
from plantimager.commons.security import KeyRing

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


@pytest.fixture
def keys(tmp_path):
    return RigKeys(tmp_path / "keys")


@pytest.fixture
def registry(ctx, keys):
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2, keys=keys.controller)
    server.start()
    yield server
    server.stop()


def as_client(ring: KeyRing) -> KeyRing:
    """The same keys, dialling the controller's registry."""
    return KeyRing(ring.folder, registry_key=KeyRing(ring.folder.parent / "controller").public_key)


def test_a_device_registers_and_is_listed_with_the_key_it_proved(ctx, registry, keys):
    node = keys.node("n1")
    name, uuid = register_device(ctx, "camera", "tcp://127.0.0.1:1", "n1", registry.url, keys=node)
    assert name == "n1"
    viewer = as_client(keys.viewer)
    [device] = list_devices(ctx, registry.url, keys=viewer)
    assert (device.name, device.addr, device.public_key) == (
        "n1",
        "tcp://127.0.0.1:1",
        node.public_key.decode(),
    )
    assert unregister_device(ctx, uuid, registry.url, keys=node)
    assert list_devices(ctx, registry.url, keys=viewer) == []


def test_a_viewer_follows_changes_but_may_not_register(ctx, registry, keys):
    viewer = as_client(keys.viewer)
    with RegistryWatcher(ctx, registry.url, keys=viewer) as watcher:
        assert watcher.wait_for(lambda devices: watcher.connected, WAIT)
        register_device(ctx, "camera", "tcp://127.0.0.1:2", "n2", registry.url, keys=keys.node("n2"))
        assert watcher.wait_for(lambda devices: "n2" in devices, WAIT)
        assert watcher.devices()["n2"].public_key == keys.node("n2").public_key.decode()
    with pytest.raises(RegistryError, match=r"refused REGISTER: ERROR: REGISTER needs the device role; "):
        register_device(ctx, "camera", "tcp://127.0.0.1:3", "fake", registry.url, keys=viewer)
    assert sorted(registry.get_devices()) == ["n2"]
    assert registry.refusals is not None and registry.refusals.total == 1


def test_plaintext_and_unknown_clients_get_nothing(ctx, registry, keys, caplog):
    with pytest.raises(RegistryError, match="did not answer LIST"):
        list_devices(ctx, registry.url, timeout=500)
    with pytest.raises(RegistryError, match="did not answer REGISTER"):
        register_device(
            ctx, "camera", "tcp://127.0.0.1:4", "x", registry.url, timeout=500, keys=as_client(keys.stranger)
        )
    assert registry.refusals.wait_for(2, WAIT)
    assert "security mechanism mismatch" in caplog.text or "handshake not completed" in caplog.text
    assert f"unknown key (key id {keys.stranger.key_id})" in caplog.text
    sub = ctx.socket(zmq.SUB)  # a plaintext subscriber of the change events hears nothing, and is logged
    try:
        sub.linger = 0
        sub.subscribe(b"")
        sub.connect(registry.events_url)
        before = registry.refusals.total
        assert registry.refusals.wait_for(before + 1, WAIT)
        assert f"to the events of the registry on port {registry.port}" in caplog.text
        assert sub.poll(300) == 0  # heartbeats are published every 0.2 s, none reaches it
    finally:
        sub.close()
    assert registry.get_devices() == {}


def test_a_device_cannot_push_another_out_but_an_operator_can(ctx, registry, keys):
    register_device(ctx, "camera", "tcp://127.0.0.1:5", "cam", registry.url, keys=keys.node("a"))
    name, _ = register_device(
        ctx, "camera", "tcp://127.0.0.1:5", "cam", registry.url, overwrite=True, keys=keys.node("b")
    )
    assert name == "cam-1"  # same address and name, other key: a new entry, the first one stays
    assert registry.get_devices() == {
        "cam": ("camera", "tcp://127.0.0.1:5"),
        "cam-1": ("camera", "tcp://127.0.0.1:5"),
    }
    again, _ = register_device(
        ctx, "camera", "tcp://127.0.0.1:6", "cam", registry.url, overwrite=True, keys=keys.node("a")
    )
    assert again == "cam"  # its own entry: replaced, as a restarted node gets its name back
    operator, _ = register_device(
        ctx, "camera", "tcp://127.0.0.1:7", "cam", registry.url, overwrite=True, keys=keys.controller
    )
    assert operator == "cam" and registry.get_devices()["cam"] == ("camera", "tcp://127.0.0.1:7")


def test_a_secured_server_registers_with_its_keys_and_is_reached_through_its_entry(ctx, registry, keys):
    server = ThermostatServer(ctx, keys=keys.node("thermo"))
    with serving(server):
        assert server.register_to_registry("thermostat", "thermo", registry.url) == "thermo"
        [device] = list_devices(ctx, registry.url, keys=keys.controller)
        client = ThermostatClient(ctx, device.addr, keys=keys.controller, server_key=device.public_key)
        with client:
            assert client.echo("found") == "Echo: found"
    assert list_devices(ctx, registry.url, keys=keys.controller) == []  # unregistered on stop


def test_only_the_key_that_registered_an_entry_or_an_operator_keeps_it_alive_or_removes_it(
    ctx, registry, keys
):
    _, uuid = register_device(ctx, "camera", "tcp://127.0.0.1:5", "cam", registry.url, keys=keys.node("a"))
    other = keys.node("b")  # another device's key, which somehow learnt the uuid
    assert send_alive_check(ctx, uuid, registry.url, keys=other) is AliveStatus.UNKNOWN
    assert unregister_device(ctx, uuid, registry.url, keys=other) is False
    assert registry.get_devices() == {"cam": ("camera", "tcp://127.0.0.1:5")}  # still there
    assert send_alive_check(ctx, uuid, registry.url, keys=keys.node("a")) is AliveStatus.OK
    assert unregister_device(ctx, uuid, registry.url, keys=keys.controller) is True  # an operator may
    assert registry.get_devices() == {}
