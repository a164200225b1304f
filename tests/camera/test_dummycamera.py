"""Tests for the DummyCamera example server and its image provider.

The last tests run the example exactly as documented: the server in its own process, registered
with a registry, driven by a ``Camera`` client, and by a raw upstream-style REQ client.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import zmq
from PIL import Image

from helpers.process import Child
from helpers.rpc_example import serving
from plantimager.commons.cameradevice import Camera, CameraMode
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import ValidationError
from plantimager.commons.examples import cameraserver
from plantimager.commons.examples.cameraserver import DummyCamera, image_provider
from plantimager.commons.examples.scene import default_image_dir
from plantimager.commons.RPC import RPCClient

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


@RPCClient.register_interface(Camera)
class CameraClient(Camera, RPCClient):
    """An upstream-style camera proxy."""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An image folder served through ``PI3_CAMERASERVER_IMAGE``: RGBA, grey and RGB files, plus noise."""
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b_rgba.png")
    Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8), "L").save(tmp_path / "c_grey.png")
    red = np.zeros((60, 80, 3), dtype=np.uint8)
    red[..., 0] = 250
    red[:, :10, 2] = 200  # some blue on the left: a channel swap would show
    Image.fromarray(red, "RGB").save(tmp_path / "a_red.png")
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.setenv(cameraserver.IMAGE_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def camera(ctx: zmq.Context, folder: Path) -> Iterator[DummyCamera]:
    cam = DummyCamera(ctx, "tcp://127.0.0.1:0")
    try:
        yield cam
    finally:
        cam.stop_server()


def load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


# -- image provider --------------------------------------------------------------------------------
def test_provider_defaults_to_the_shipped_views_in_order_and_loops(monkeypatch):
    monkeypatch.delenv(cameraserver.IMAGE_ENV, raising=False)
    views = sorted(default_image_dir().glob("*.jpg"))
    provider = image_provider()
    images = [next(provider) for _ in range(len(views) + 1)]
    assert np.array_equal(images[0], load(views[0])) and np.array_equal(images[3], load(views[3]))
    assert np.array_equal(images[-1], images[0])  # loops
    assert all(im.shape == (480, 640, 3) and im.dtype == np.uint8 for im in images)


def test_provider_reads_the_env_folder_sorted_and_drops_alpha(folder):
    provider = image_provider()
    red, rgba, grey, again = (next(provider) for _ in range(4))
    assert np.array_equal(red, load(folder / "a_red.png"))
    assert np.array_equal(rgba, load(folder / "b_rgba.png")[:, :, :3])
    assert grey.shape == (60, 80, 3) and np.array_equal(grey[..., 0], load(folder / "c_grey.png"))
    assert np.array_equal(again, red)


def test_provider_and_lag_errors_are_clear(ctx, tmp_path, monkeypatch):
    monkeypatch.setenv(cameraserver.IMAGE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        next(image_provider())
    monkeypatch.setenv(cameraserver.IMAGE_ENV, str(tmp_path))
    with pytest.raises(ValidationError, match="holds no image"):
        next(image_provider())
    monkeypatch.delenv(cameraserver.IMAGE_ENV)
    monkeypatch.setenv(cameraserver.LAG_ENV, "slow")
    with pytest.raises(ValidationError, match="PI3_CAMERASERVER_LAG"):
        DummyCamera(ctx, "tcp://127.0.0.1:0")


# -- the server in-process -----------------------------------------------------------------------------
def test_initial_state(camera):
    assert camera.mode == CameraMode.STILL and camera.video_url == ""
    assert camera.rotation == 0 and camera.encoding == "jpeg" and camera.config == {}
    assert camera.resolution == (80, 60)  # the size of the images served


def test_get_image_jpeg_png_in_rgb_order_and_lores(camera, folder):
    data, info = camera.get_image()
    assert info == {"format": "jpeg", "rotation": 0, "size": [60, 80, 3]}
    assert simplejpeg.decode_jpeg(bytes(data)).shape == (60, 80, 3)
    camera.encoding = "png"
    data, info = camera.get_image()  # the RGBA file, alpha dropped
    assert info["format"] == "png"
    assert np.array_equal(load(io.BytesIO(bytes(data))), load(folder / "b_rgba.png")[:, :, :3])
    camera.get_image()
    data, _ = camera.get_image()  # the red file again: red stays red (upstream swapped R and B)
    assert np.array_equal(load(io.BytesIO(bytes(data))), load(folder / "a_red.png"))


def test_lores_is_honoured(ctx, tmp_path, monkeypatch):
    Image.fromarray(np.full((960, 1280, 3), 90, dtype=np.uint8)).save(tmp_path / "big.jpg")
    monkeypatch.setenv(cameraserver.IMAGE_ENV, str(tmp_path))
    cam = DummyCamera(ctx, "tcp://127.0.0.1:0")
    try:
        assert cam.get_image()[1]["size"] == [960, 1280, 3]
        assert cam.get_image(lores=True)[1]["size"] == [480, 640, 3]
        cam.resolution = (320, 200)
        data, info = cam.get_image()
        assert info["size"] == [200, 320, 3] and simplejpeg.decode_jpeg(bytes(data)).shape == (200, 320, 3)
    finally:
        cam.stop_server()


def test_setters_validate_and_signal_only_on_change(camera):
    seen: list[tuple[str, object]] = []
    for name in ("modeChanged", "videoUrlChanged", "rotationChanged", "resolutionChanged", "encodingChanged"):
        getattr(camera, name).connect(lambda value, name=name: seen.append((name, value)))
    configs: list[dict] = []
    camera.configChanged.connect(configs.append)

    camera.encoding = "jpeg"
    camera.rotation = 0
    camera.mode = CameraMode.STILL
    camera.resolution = (80, 60)
    assert seen == []
    camera.encoding = "png"
    camera.rotation = 270
    camera.resolution = (40, 30)
    assert seen == [("encodingChanged", "png"), ("rotationChanged", 270), ("resolutionChanged", (40, 30))]
    for attribute, value in (
        ("encoding", "gif"),
        ("rotation", 45),
        ("mode", "PANORAMA"),
        ("resolution", (0, 5)),
    ):
        with pytest.raises(ValidationError):
            setattr(camera, attribute, value)
    assert camera.encoding == "png" and camera.rotation == 270 and camera.resolution == (40, 30)
    camera.config = {"Brightness": 0.5}
    camera.config = {"Contrast": 1.2}
    camera.config = {"Contrast": 1.2}
    both = {"Brightness": 0.5, "Contrast": 1.2}
    assert configs == [{"Brightness": 0.5}, both, both]  # emitted even when nothing changed
    assert camera.get_image()[1]["rotation"] == 270


def test_video_mode_serves_a_live_preview(camera):
    urls: list[str] = []
    camera.videoUrlChanged.connect(urls.append)
    camera.mode = "VIDEO"  # coerced to CameraMode
    assert camera.mode is CameraMode.VIDEO
    url = camera.video_url
    assert url.startswith("http://127.0.0.1:") and url.endswith(".mjpg")
    snapshot = url.replace("/stream/", "/snapshot/").replace(".mjpg", ".jpg")
    with urllib.request.urlopen(snapshot, timeout=WAIT) as response:
        assert simplejpeg.decode_jpeg(response.read()).shape == (60, 80, 3)
    camera.get_image()  # switches back to STILL
    assert camera.mode is CameraMode.STILL and camera.video_url == ""
    assert urls == [url, ""]


def test_lag_delays_get_image(ctx, folder, monkeypatch):
    monkeypatch.setenv(cameraserver.LAG_ENV, "60")
    cam = DummyCamera(ctx, "tcp://127.0.0.1:0")
    try:
        start = time.monotonic()
        cam.get_image()
        assert time.monotonic() - start >= 0.06
    finally:
        cam.stop_server()


# -- over the wire -----------------------------------------------------------------------------------
def test_raw_upstream_client_gets_inventory_and_image(ctx, camera):
    with serving(camera):
        sock = ctx.socket(zmq.REQ)
        sock.linger = 0
        sock.rcvtimeo = int(WAIT * 1000)
        sock.connect(camera.address)
        try:
            sock.send(json.dumps({"event": "GET_INVENTORY"}).encode())
            inventory = json.loads(sock.recv())
            assert inventory["json_methods"] == {}
            assert inventory["buffer_methods"] == {"get_image": 10000}
            assert set(inventory["properties"]) == {
                "encoding",
                "config",
                "mode",
                "video_url",
                "rotation",
                "resolution",
            }
            assert set(inventory["signals"]) == {
                "modeChanged",
                "videoUrlChanged",
                "rotationChanged",
                "resolutionChanged",
                "encodingChanged",
                "configChanged",
            }
            assert inventory["name"] == ""
            call = {"event": "METHOD_CALL", "method": "get_image", "params": {"args": [False], "kwargs": {}}}
            sock.send(json.dumps(call).encode())
            head, body = sock.recv_multipart()
            info = json.loads(head)
            assert info == {"format": "jpeg", "rotation": 0, "size": [60, 80, 3]} and "error" not in info
            assert simplejpeg.decode_jpeg(body).shape == (60, 80, 3)
            sock.send(json.dumps({"event": "PROPERTY_SET", "property": "mode", "value": 5}).encode())
            reply = json.loads(sock.recv())
            assert reply["success"] is False and "mode" in reply["error"]  # upstream accepted 5
            sock.send(json.dumps({"event": "PROPERTY_GET", "property": "mode"}).encode())
            assert json.loads(sock.recv()) == {"success": True, "value": "STILL"}
        finally:
            sock.close()


def test_documented_example_runs(ctx, folder):
    """The seed example: serve a DummyCamera, register it, drive it with a Camera client, stop it."""
    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    registry.start()
    child = Child(
        [
            sys.executable,
            "-m",
            "plantimager.commons.examples.cameraserver",
            "--registry",
            registry.url,
            "--url",
            "tcp://127.0.0.1:0",
        ]
    )
    try:
        child.wait_for(r"registered as DummyCamera with ")
        device_type, address = registry.get_devices()["DummyCamera"]
        assert device_type == "camera"
        with CameraClient(ctx, address, timeout=5000) as cam:
            assert cam.name == "DummyCamera"
            encodings: list[str] = []
            changed = threading.Event()
            cam.encodingChanged.connect(lambda value: (encodings.append(value), changed.set()))
            data, info = cam.get_image()
            assert info["format"] == "jpeg" and simplejpeg.decode_jpeg(bytes(data)).shape == (60, 80, 3)
            cam.encoding = "png"
            assert changed.wait(WAIT) and encodings == ["png"]
            data, info = cam.get_image()
            assert info["format"] == "png" and bytes(data[:4]) == b"\x89PNG"
            assert cam.stop_server() is True
        assert child.popen.wait(WAIT) == 0
        child.wait_for("DummyCamera stopped")
        assert "DummyCamera" not in registry.get_devices()  # it unregistered on the way out
    finally:
        child.kill()
        registry.stop()


def test_example_second_instance_keeps_the_first_name(ctx, folder):
    """Registered with overwrite False, as upstream: a second DummyCamera gets another name."""
    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    registry.start()
    args = [sys.executable, "-m", "plantimager.commons.examples.cameraserver", "--registry", registry.url]
    first = Child([*args, "--url", "tcp://127.0.0.1:0"])
    second = None
    try:
        first.wait_for(r"registered as DummyCamera with ")
        second = Child([*args, "--url", "tcp://127.0.0.1:0"])
        assert second.wait_for(r"registered as (\S+) with ").group(1) == "DummyCamera-1"
        for child in (first, second):
            child.popen.send_signal(signal.SIGINT)
            assert child.popen.wait(WAIT) == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
        registry.stop()
