"""The four contracts of the test kit, run against our own node with two dummy cameras.

The dummy cameras show synthetic views made here (one per camera), so the tests depend on no data file.

In-process, the tests get the ``CameraNodeServer`` itself; over RPC, the kit serves it on the
loopback interface and the tests get a client proxy. Every node has its own temporary spool.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from plantimager.camera.dummy import DummyBackend
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.spool import Spool
from plantimager.commons.RPC import RPCClient
from plantimager.testing import CameraContract, CameraOverRPC, NodeContract, NodeOverRPC
from plantimager.testing.fixtures import LOOPBACK_URL

CAMERAS = 2
RESOLUTION = (640, 480)


def _views() -> list[np.ndarray]:
    """One synthetic view per camera, clearly different from each other (gradients, own tint)."""
    rows, cols = np.indices((600, 800))
    views = []
    for i in range(CAMERAS):
        red = (cols * 255 // 799 + 90 * i) % 256
        green = (rows * 255 // 599) * (1 - i) + (255 - rows * 255 // 599) * i
        blue = ((rows // 50 + cols // 50) % 2) * (120 + 100 * i)
        views.append(np.dstack([red, green, blue]).astype(np.uint8))
    return views


@pytest.fixture
def dummy_node(plantimager_context: zmq.Context, tmp_path: Path) -> Iterator[CameraNodeServer]:
    """A node with two dummy cameras and a temporary spool, listening on loopback, not serving."""
    spool = Spool(tmp_path / "spool")
    views = _views()
    backends = [DummyBackend(i, RESOLUTION, images=views) for i in range(CAMERAS)]
    try:
        node = CameraNodeServer(
            plantimager_context,
            LOOPBACK_URL,
            backends=backends,
            spool=spool,
            node_id="kit-dummy-node",
            stream_port=0,
        )
    except BaseException:
        spool.close()
        raise
    try:
        yield node
    finally:
        node.close()
        spool.close()


class TestDummyCamera(CameraContract):
    @pytest.fixture
    def camera(self, dummy_node: CameraNodeServer) -> CameraNodeServer:
        return dummy_node


class TestDummyNode(NodeContract):
    @pytest.fixture
    def node(self, dummy_node: CameraNodeServer) -> CameraNodeServer:
        return dummy_node


class TestDummyCameraOverRPC(CameraOverRPC):
    @pytest.fixture
    def local_camera(self, dummy_node: CameraNodeServer) -> CameraNodeServer:
        return dummy_node

    def test_camera_is_a_remote_proxy(self, camera: RPCClient, local_camera: CameraNodeServer) -> None:
        """The contract tests above really went through a client connected to the served node."""
        assert isinstance(camera, RPCClient)
        assert camera.url == f"tcp://127.0.0.1:{local_camera.port}"
        assert camera.get_current_resolution() == list(local_camera.get_current_resolution())


class TestDummyNodeOverRPC(NodeOverRPC):
    @pytest.fixture
    def local_node(self, dummy_node: CameraNodeServer) -> CameraNodeServer:
        return dummy_node

    def test_node_is_a_remote_proxy(self, node: RPCClient, local_node: CameraNodeServer) -> None:
        """The contract tests above really went through a client connected to the served node."""
        assert isinstance(node, RPCClient)
        assert node.url == f"tcp://127.0.0.1:{local_node.port}"
        code = node.start_capture("kit-proxy-check")["data_code"]
        assert local_node.pending() == {code: [0, 1]}
