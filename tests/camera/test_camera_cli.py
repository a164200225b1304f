"""Tests for ``plantimager camera``: a node in its own process, its signals, and crash durability."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from helpers.process import LAUNCH, WAIT, Child, free_port
from plantimager.commons.cameradevice import Camera, CameraNode, split_stills
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.RPC import RPCClient

pytestmark = pytest.mark.timeout(60)


class NodeInterface(CameraNode, Camera):
    """Everything a camera node serves."""


@RPCClient.register_interface(NodeInterface)
class NodeClient(NodeInterface, RPCClient):
    """A controller's proxy of a node."""


@pytest.fixture
def registry(ctx: zmq.Context) -> Iterator[DeviceRegistry]:
    server = DeviceRegistry(ctx, "127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Node(Child):
    """``plantimager camera`` in a child process; its output lines can be waited on."""

    def __init__(self, *args: str) -> None:
        super().__init__([*LAUNCH, "camera", *args])

    def ready(self) -> tuple[str, str, list[str]]:
        """Wait for the start-up lines; return (node id, address, stream URLs)."""
        match = self.wait_for(r"^node ([\w-]+) listening on (tcp://\S+)$")
        urls = []
        while True:
            line = self.wait_for(r"^(stream \S+: (http://\S+)|spool .*)$")
            if line.group(2) is None:
                return match.group(1), match.group(2), urls
            urls.append(line.group(2))


def stop(node: Node) -> None:
    """SIGINT by pid; the node must exit cleanly."""
    node.popen.send_signal(signal.SIGINT)
    assert node.popen.wait(WAIT) == 0


def node_args(tmp_path: Path, registry_url: str, cameras: int = 2) -> list[str]:
    return [
        "--backend",
        "dummy",
        "--cameras",
        str(cameras),
        "--registry",
        registry_url,
        "--spool",
        str(tmp_path / "spool"),
        "--state-dir",
        str(tmp_path / "state"),
        "--bind",
        "tcp://127.0.0.1:0",
        "--stream-port",
        "0",
        "--resolution",
        "320x240",
    ]


def test_cli_serves_registers_and_exits_zero_on_sigint(ctx, registry, tmp_path):
    node = Node(*node_args(tmp_path, registry.url))
    try:
        node_id, address, urls = node.ready()
        assert address.startswith("tcp://127.0.0.1:") and len(urls) == 2
        assert urls[0].startswith("http://127.0.0.1:") and urls[1].endswith("/cam1.mjpg")
        node.wait_for(rf"^registered as {node_id} with {re.escape(registry.url)}$")
        assert registry.get_devices()[node_id] == ("camera", address)
        with NodeClient(ctx, address, timeout=5000) as client:
            assert client.identify() == node_id and client.stream_urls() == urls
        node.popen.send_signal(signal.SIGINT)
        assert node.popen.wait(WAIT) == 0
        node.wait_for("^node stopped$")
        assert node_id not in registry.get_devices()
    finally:
        node.kill()


def test_cli_serves_while_the_registry_is_down_and_stops_on_sigterm(ctx, tmp_path):
    node = Node(*node_args(tmp_path, f"tcp://127.0.0.1:{free_port()}", cameras=1))
    try:
        _, address, _ = node.ready()
        with NodeClient(ctx, address, timeout=5000) as client:
            assert client.ping() is True
            node.wait_for("unreachable: serving anyway")
            assert client.start_capture("offline")["cameras"][0]["camera"] == "cam0"
        node.popen.send_signal(signal.SIGTERM)
        assert node.popen.wait(WAIT) == 0
    finally:
        node.kill()


def test_nodes_sharing_a_host_register_under_distinct_stable_names(registry, tmp_path):
    """Two nodes on one host, each with its own state folder, no --name: two registry entries."""
    homes = [tmp_path / "one", tmp_path / "two"]
    nodes = [Node(*node_args(home, registry.url, cameras=1)) for home in homes]
    try:
        ids = [node.ready()[0] for node in nodes]
        for node, node_id in zip(nodes, ids, strict=True):
            node.wait_for(rf"^registered as {re.escape(node_id)} with ")
        assert ids[0] != ids[1]
        assert set(ids) <= set(registry.get_devices())
        stop(nodes[0])
        again = Node(*node_args(homes[0], registry.url, cameras=1))
        nodes.append(again)
        assert again.ready()[0] == ids[0]  # the same node restarted keeps its id and its name
        again.wait_for(rf"^registered as {re.escape(ids[0])} with ")
        assert set(ids) <= set(registry.get_devices())
    finally:
        for node in nodes:
            node.kill()


def test_cli_refuses_a_bad_name_and_settle_time(tmp_path):
    base = [*LAUNCH, "camera", "--spool", str(tmp_path / "s"), "--registry", ""]
    for option, value, message in (
        ("--name", "../up", "invalid node name '../up'"),
        ("--name", "a b", "invalid node name 'a b'"),
        ("--settle-ms", "-1", "--settle-ms"),
    ):
        result = subprocess.run(
            [*base, option, value], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
    assert not (tmp_path / "s").exists()  # refused before anything started


def test_cli_refuses_an_unknown_backend(tmp_path):
    result = subprocess.run(
        [*LAUNCH, "camera", "--backend", "nope", "--spool", str(tmp_path / "s"), "--registry", ""],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode != 0
    assert "unknown camera backend 'nope'; known backends: dummy" in result.stderr


def test_captures_survive_sigkill(ctx, registry, tmp_path):
    """Captures taken before a SIGKILL are all there, intact, after a restart; only release deletes."""
    node = Node(*node_args(tmp_path, registry.url))
    try:
        node_id, address, _ = node.ready()
        stored: dict[tuple[str, int], str] = {}
        with NodeClient(ctx, address, timeout=5000) as client:
            client.configure({"encoding": "png"}, 1)
            for code in ("d1", "d2", "d3"):
                record = client.start_capture(code, time.time() + 0.02)
                for meta in record["cameras"]:
                    stored[(code, meta["camera_index"])] = meta["sha256"]
            client.retrieve_stills_jpg("d1")  # retrieving deletes nothing
        os.kill(node.popen.pid, signal.SIGKILL)
        assert node.popen.wait(WAIT) == -signal.SIGKILL
    finally:
        node.kill()

    node = Node(*node_args(tmp_path, registry.url))
    try:
        restarted_id, address, _ = node.ready()
        assert restarted_id == node_id
        node.wait_for(rf"^registered as {node_id} with ")  # the name is taken back
        assert registry.get_devices()[node_id] == ("camera", address)
        with NodeClient(ctx, address, timeout=5000) as client:
            assert client.identify() == node_id
            assert client.pending() == {"d1": [0, 1], "d2": [0, 1], "d3": [0, 1]}
            for (code, index), sha in stored.items():
                data, meta = client.retrieve_still(code, index)
                assert hashlib.sha256(data).hexdigest() == sha == meta["sha256"]
                assert meta["format"] == ("png" if index == 1 else "jpeg")
            data, info = client.retrieve_stills_png("d2")
            assert hashlib.sha256(split_stills(data, info)[1]).hexdigest() == stored[("d2", 1)]
            assert sum(client.release(code) for code in ("d1", "d2", "d3")) == 6
            assert client.pending() == {}
        node.popen.send_signal(signal.SIGINT)
        assert node.popen.wait(WAIT) == 0
    finally:
        node.kill()
    assert not [p for p in (tmp_path / "spool").iterdir() if p.name != ".lock"]
