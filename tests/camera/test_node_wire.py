"""What a capture and its download look like on the wire: plaintext without keys, nothing readable with.

A small TCP proxy between a controller's client and a camera node keeps every byte; with CurveZMQ
neither the method names nor the request arguments nor any part of the JPEG appear in them.
"""

from __future__ import annotations

import pytest
import simplejpeg

from helpers.keys import RigKeys
from helpers.proxy import RecordingProxy
from helpers.rpc_example import serving
from plantimager.camera.dummy import DummyBackend
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.spool import Spool
from plantimager.testing import NodeClient

pytestmark = pytest.mark.timeout(60)

NAMES = (b"start_capture", b"retrieve_still", b"METHOD_CALL", b"wire-test-code")


def capture_and_download(ctx, tmp_path, keys: RigKeys | None) -> tuple[bytes, bytes]:
    """Capture and download one image through a recording proxy; return (the JPEG, the bytes seen)."""
    spool = Spool(tmp_path / ("spool-secure" if keys else "spool-plain"))
    node_keys = keys.node("wire") if keys else None
    node = CameraNodeServer(
        ctx,
        "tcp://127.0.0.1:0",
        backends=[DummyBackend(0, resolution=(320, 240))],
        spool=spool,
        state_dir=tmp_path / "state",
        stream_port=None,
        keys=node_keys,
    )
    proxy = RecordingProxy(node.port)
    try:
        with serving(node):
            secured = {"keys": keys.controller, "server_key": node_keys.public_key} if keys else {}
            with NodeClient(ctx, f"tcp://127.0.0.1:{proxy.port}", timeout=5000, **secured) as client:
                client.start_capture("wire-test-code")
                data, _meta = client.retrieve_still("wire-test-code", 0)
                jpeg = bytes(data)
        return jpeg, proxy.seen
    finally:
        proxy.close()
        node.close()
        spool.close()


def slices(jpeg: bytes, width: int = 24) -> list[bytes]:
    """Pieces of the JPEG from its start, middle and end (any would show in plaintext)."""
    step = max(1, (len(jpeg) - width) // 8)
    return [jpeg[i : i + width] for i in range(0, len(jpeg) - width, step)]


def test_without_keys_the_wire_shows_the_calls_and_the_image(ctx, tmp_path):
    jpeg, seen = capture_and_download(ctx, tmp_path, None)
    assert simplejpeg.decode_jpeg(jpeg).shape == (240, 320, 3)
    assert all(name in seen for name in NAMES)
    assert jpeg in seen and all(piece in seen for piece in slices(jpeg))


def test_with_curve_the_wire_shows_neither_calls_nor_image(ctx, tmp_path):
    jpeg, seen = capture_and_download(ctx, tmp_path, RigKeys(tmp_path / "keys"))
    assert simplejpeg.decode_jpeg(jpeg).shape == (240, 320, 3)
    assert len(seen) > len(jpeg)  # the image did cross the proxy, encrypted
    assert [name for name in NAMES if name in seen] == []
    assert [piece for piece in slices(jpeg) if piece in seen] == []
    assert b"CURVE" in seen  # the greeting names the mechanism, and that is all there is to read
