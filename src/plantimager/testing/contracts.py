"""Contract tests for camera implementations: subclass a contract, give it one fixture, run pytest.

The classes here are not collected by pytest themselves (their names do not start with ``Test``);
a subclass named ``Test...`` inherits every test::

    from plantimager.testing import NodeContract

    class TestMyNode(NodeContract):
        @pytest.fixture
        def node(self, tmp_path):
            node = MyNode(spool=tmp_path)
            yield node
            node.close()

* :class:`CameraContract` (fixture ``camera``): the per-camera operations of
  :class:`~plantimager.commons.cameradevice.CameraNode` on camera 0 (``still``, ``low_res_still``,
  ``get_max_resolution``, ``get_current_resolution``, ``set_resolution``).
* :class:`NodeContract` (fixture ``node``): the node operations (ping, identify, stream URLs,
  capture, retrieval, release, methods, data code checks, shutdown).
* :class:`CameraOverRPC` and :class:`NodeOverRPC` (fixture ``local_camera`` / ``local_node``: an
  ``RPCServer`` not serving yet): the kit serves it on the loopback interface in a thread and runs
  the same tests through a client proxy; the server is stopped and joined after each test.

Each test should get a fresh object (function-scoped fixtures, pytest's default).

This module gathers the public names: the camera contracts live in :mod:`.cameracontract`, the node
contracts in :mod:`.nodecontract`, and the checks they share in :mod:`.checks`.
"""

from __future__ import annotations

from .cameracontract import CameraContract, CameraOverRPC
from .checks import BAD_DATA_CODES, JPEG_MAGIC, LOW_RES, PNG_MAGIC, decode_raw_rgb, new_data_code
from .nodecontract import NodeContract, NodeOverRPC

__all__ = [
    "BAD_DATA_CODES",
    "JPEG_MAGIC",
    "LOW_RES",
    "PNG_MAGIC",
    "CameraContract",
    "CameraOverRPC",
    "NodeContract",
    "NodeOverRPC",
    "decode_raw_rgb",
    "new_data_code",
]
