"""A secured rig end to end: a CURVE registry, camera node processes with keys of their own, a Rig.

Every node trusts the controller's key as an operator and a viewer's key as a viewer; the controller
(registry and rig) trusts each node's key as a device. Nothing here talks plaintext, but for the
refused clients.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
import simplejpeg
import zmq

from helpers.keys import RigKeys
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import AccessDenied, RPCTimeoutError
from plantimager.commons.RPC import RPCClient
from plantimager.commons.security import Role
from plantimager.rig import CallLimits, Rig
from plantimager.testing import NodeClient

from .conftest import Node

pytestmark = pytest.mark.timeout(90)
LIMITS = CallLimits(connect=2000, call=3000, capture=20_000, transfer=5000)


@pytest.fixture
def keys(tmp_path: Path) -> RigKeys:
    return RigKeys(tmp_path / "keys")


@pytest.fixture
def secure_registry(ctx: zmq.Context, keys: RigKeys):
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2, keys=keys.controller)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def secure_nodes(secure_registry, keys, tmp_path):
    """Start secured node processes (``secure_nodes("n1", "n2")``), each stopped by pid at the end."""
    started: list[Node] = []

    def start(*names: str) -> list[Node]:
        nodes = [
            Node(name, secure_registry.url, tmp_path / "nodes" / name, extra=tuple(keys.node_args(name)))
            for name in names
        ]
        started.extend(nodes)
        return [node.ready() for node in nodes]

    yield start
    for node in started:
        node.stop(10)


def client(ctx: zmq.Context, node: Node, keys: RigKeys, ring, timeout: int = 3000) -> RPCClient:
    server_key = keys.node(node.name).public_key
    return NodeClient(ctx, node.address, timeout=timeout, keys=ring, server_key=server_key)


def test_a_secured_rig_captures_downloads_configures_and_shuts_down(
    ctx, secure_nodes, secure_registry, keys, tmp_path
):
    nodes = secure_nodes("n1", "n2", "n3")
    dataset = tmp_path / "session"
    with Rig(secure_registry.url, context=ctx, keys=keys.controller, limits=LIMITS, dataset=dataset) as rig:
        assert rig.wait_for_cameras(3, 20), rig.nodes()
        first = rig.capture_all()
        assert not first.failures and len(first.shots) == 3
        settings = rig.configure_all(quality=70)
        assert {camera: value["quality"] for camera, value in settings.items()} == {
            "n1/cam0": 70,
            "n2/cam0": 70,
            "n3/cam0": 70,
        }
        second = rig.capture_all()
        report = rig.download_all()
        assert not report.failures and report.owed == 0 and len(report.files) == 6
        with client(ctx, nodes[0], keys, keys.controller) as operator:
            assert operator.pending() == {}  # released once safely received
        manifest = json.loads((dataset / "manifest.json").read_text())
        entries = {entry["file"]: entry for entry in manifest["images"]}
        shots = {s.file: s for record in (first, second) for s in record.shots}
        assert set(entries) == set(shots)
        for name, entry in entries.items():
            data = (dataset / name).read_bytes()
            assert entry["size"] == len(data) == shots[name].size
            assert entry["sha256"] == hashlib.sha256(data).hexdigest() == shots[name].sha256
            assert simplejpeg.decode_jpeg(data).shape == (240, 320, 3)
        assert sorted(rig.shutdown_all()) == ["n1", "n2", "n3"]
    for node in nodes:
        assert node.popen.wait(15) == 0


def test_a_secured_node_refuses_plaintext_unknown_and_revoked_keys_and_serves_trusted_ones(
    ctx, secure_nodes, keys
):
    [node] = secure_nodes("n1")
    with pytest.raises(RPCTimeoutError):  # (a) plaintext
        NodeClient(ctx, node.address, timeout=500)
    # Whichever side sees the mismatch first: the node reports it, or the client hangs up on it.
    node.wait_for(
        r"refused a connection from \S+ to the CameraNodeServer on port \d+: "
        r"(security mechanism mismatch|handshake not completed)"
    )
    with pytest.raises(RPCTimeoutError):  # (b) a key the node does not trust
        client(ctx, node, keys, keys.stranger, timeout=500)
    node.wait_for(
        r"refused a connection from 127\.0\.0\.1 to .*: "
        rf"unknown key \(key id {re.escape(keys.stranger.key_id)}\)"
    )
    with client(ctx, node, keys, keys.viewer) as viewer:  # trusted: served
        assert viewer.ping() is True
    RigKeys.revoke(keys.node("n1").folder, "viewer")  # as `plantimager keys revoke viewer` on the Pi
    with pytest.raises(RPCTimeoutError):  # (c) revoked
        client(ctx, node, keys, keys.viewer, timeout=500)
    node.wait_for(
        r"refused a connection from 127\.0\.0\.1 to .*: "
        rf"revoked key viewer \(key id {re.escape(keys.viewer.key_id)}\)"
    )
    with client(ctx, node, keys, keys.controller) as operator:
        assert operator.ping() is True and operator.pending() == {}


def test_a_viewer_lists_and_previews_but_cannot_capture_configure_release_or_shut_down(
    ctx, secure_nodes, keys
):
    [node] = secure_nodes("n1")
    with client(ctx, node, keys, keys.viewer) as viewer:
        [camera] = viewer.cameras()
        assert camera["name"] == "cam0" and camera["stream_url"].startswith(
            "http://127.0.0.1:"
        )  # loopback only
        assert (
            viewer.status()["cameras"][0]["name"] == "cam0" and viewer.identify() and viewer.pending() == {}
        )
        frame = b""
        deadline = time.monotonic() + 20  # the preview starts on the first call; its first frame follows
        while not frame and time.monotonic() < deadline:
            data, info = viewer.preview_frame(0, 0)
            frame = bytes(data)
        assert simplejpeg.decode_jpeg(frame).shape == (480, 640, 3) and info["seq"] >= 1
        for method, args in (
            ("start_capture", ("d1",)),
            ("configure", ({"quality": 50},)),
            ("release", ("d1",)),
            ("retrieve_still", ("d1", 0)),
            ("shutdown", ()),
        ):
            with pytest.raises(
                AccessDenied, match=rf"^{method}\(\) needs the operator role; the key viewer "
            ):
                getattr(viewer, method)(*args)
        with pytest.raises(AccessDenied, match="setting property 'resolution' needs the operator role"):
            viewer.resolution = (64, 64)
        assert viewer.status()["captures"] == 0 and viewer.ping() is True  # nothing ran, still serving
    with client(ctx, node, keys, keys.controller) as operator:
        record = operator.start_capture("d1")
        assert [c["camera"] for c in record["cameras"]] == ["cam0"]
        assert operator.configure({"quality": 50})[0]["quality"] == 50
        data, meta = operator.retrieve_still("d1", 0)
        assert simplejpeg.decode_jpeg(bytes(data)).shape == (240, 320, 3) and meta["size"] == len(data)
        assert operator.release("d1") == 1
        operator.shutdown()
    assert node.popen.wait(15) == 0


def test_a_key_the_registry_does_not_trust_gets_a_hint_saying_so(secure_registry, keys, run_cli):
    # The stranger knows the registry's key, but the registry does not know the stranger's.
    keys.stranger.trust(keys.controller.public_key.decode(), Role.OPERATOR, "controller")
    args = ["rig", "list", "--registry", secure_registry.url, "--wait", "1"]
    args += ["--keys", str(keys.stranger.folder), "--registry-key", "controller"]
    code, output = run_cli(*args).finish()
    assert code == 1 and "did not answer within 1 s" in output, output
    assert f"or it does not trust this key ({keys.stranger.key_id})" in output
    assert "plantimager keys trust" in output
