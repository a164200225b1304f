"""The picamera2 backend, against a fake Picamera2 that behaves like the real one where it matters.

The fake (``fake_picamera2.py``) is put in ``sys.modules`` for each test. The whole contract kit
runs against a node of two such cameras, in process and over RPC; the other tests check what is
specific to the backend: colour order, previews, controls and their ranges, resolution changes,
capture timing, and the message given when picamera2 is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import simplejpeg
import zmq
from click.testing import CliRunner

from plantimager.camera.backend import available_backends, get_backend_factory
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.picamera2 import (
    MISSING_MESSAGE,
    Picamera2Backend,
    fit_preview,
    preview_size,
    still_to_rgb,
    yuv420_to_rgb,
)
from plantimager.camera.runner import run_node
from plantimager.camera.slot import decode_image, preview_jpeg
from plantimager.camera.spool import Spool
from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.testing import CameraContract, CameraOverRPC, NodeContract, NodeOverRPC
from plantimager.testing.fixtures import LOOPBACK_URL

pytestmark = pytest.mark.timeout(60)


def _load_fake() -> ModuleType:
    path = Path(__file__).with_name("fake_picamera2.py")
    spec = importlib.util.spec_from_file_location("plantimager_tests_fake_picamera2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fake = _load_fake()
RED = (220, 20, 30)


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Two fake camera modules in ``sys.modules``; every request must be released by the end."""
    cameras = fake.install(monkeypatch, fake.FakeSensor(), fake.FakeSensor())
    yield cameras
    assert cameras.held_requests == 0, "the backend kept requests it should have released"
    still_open = [c.camera_num for c in cameras.opened if not c.closed]
    assert not still_open, f"cameras {still_open} were never closed"


@pytest.fixture
def backend(system: object) -> Iterator[Picamera2Backend]:
    camera = Picamera2Backend(0, (640, 480))
    yield camera
    camera.close()


@pytest.fixture
def picamera_node(
    system: object, plantimager_context: zmq.Context, tmp_path: Path
) -> Iterator[CameraNodeServer]:
    """A node serving both fake cameras at 640x480, on loopback, not serving yet."""
    spool = Spool(tmp_path / "spool")
    backends: list[Picamera2Backend] = []
    try:
        backends = [Picamera2Backend(i, (640, 480)) for i in range(2)]
        node = CameraNodeServer(
            plantimager_context,
            LOOPBACK_URL,
            backends=backends,
            spool=spool,
            node_id="kit-picamera2",
            stream_port=0,
        )
    except BaseException:
        for camera in backends:
            camera.close()
        spool.close()
        raise
    try:
        yield node
    finally:
        node.close()
        spool.close()


# -- the contract kit --------------------------------------------------------------------------------
class TestPicamera2Camera(CameraContract):
    @pytest.fixture
    def camera(self, picamera_node: CameraNodeServer) -> CameraNodeServer:
        return picamera_node


class TestPicamera2Node(NodeContract):
    @pytest.fixture
    def node(self, picamera_node: CameraNodeServer) -> CameraNodeServer:
        return picamera_node


class TestPicamera2CameraOverRPC(CameraOverRPC):
    @pytest.fixture
    def local_camera(self, picamera_node: CameraNodeServer) -> CameraNodeServer:
        return picamera_node


class TestPicamera2NodeOverRPC(NodeOverRPC):
    @pytest.fixture
    def local_node(self, picamera_node: CameraNodeServer) -> CameraNodeServer:
        return picamera_node

    def test_controls_refused_over_rpc(self, node: object) -> None:
        """Over RPC too, a bad control comes back as a ValidationError naming it and its range."""
        with pytest.raises(ValidationError, match=r"'ExposureTime'.*\[29, 1000000\]"):
            node.configure({"controls": {"ExposureTime": 5_000_000}})
        with pytest.raises(ValidationError, match="unknown control 'Shutter'"):
            node.config = {"Shutter": 1}


# -- lazy import and registration -------------------------------------------------------------------
def test_registered_under_its_name() -> None:
    assert "picamera2" in available_backends()
    assert get_backend_factory("picamera2") is Picamera2Backend


def test_missing_picamera2_gives_the_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    factory = get_backend_factory("picamera2")  # the module itself imports fine
    with pytest.raises(PlantImagerError) as info:
        factory(0)
    message = str(info.value)
    assert MISSING_MESSAGE in message
    assert "apt install python3-picamera2" in message and "--system-site-packages" in message


def test_missing_picamera2_through_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``plantimager camera --backend picamera2`` stops at once with the message, exit status 1."""
    monkeypatch.setitem(sys.modules, "picamera2", None)
    from plantimager.cli.camera import camera

    result = CliRunner().invoke(
        camera, ["--backend", "picamera2", "--registry", "", "--spool", str(tmp_path / "s")]
    )
    assert result.exit_code == 1, result.output
    assert "apt install python3-picamera2" in result.output


@pytest.mark.parametrize(
    ("option", "exit_code", "message"),
    [
        ("buffer_count=0", 1, "buffer_count must be an int in [1, 8], got 0"),  # JSON: the int 0
        ("hflip=yes", 1, "got 'yes', True"),  # not JSON: the string 'yes'
        ("vflip", 2, "expected KEY=VALUE"),
    ],
)
def test_backend_options_reach_the_backend(
    system: object, tmp_path: Path, option: str, exit_code: int, message: str
) -> None:
    """``--backend-option KEY=VALUE`` values are read as JSON when they can be, else as strings."""
    from plantimager.cli.camera import camera

    args = [
        "--backend",
        "picamera2",
        "--registry",
        "",
        "--spool",
        str(tmp_path / "s"),
        "--backend-option",
        option,
    ]
    if option.startswith("hflip"):
        args += ["--backend-option", "vflip=true"]
    result = CliRunner().invoke(camera, args)
    assert result.exit_code == exit_code, result.output
    assert message in result.output


def test_no_such_camera(system: object) -> None:
    with pytest.raises(
        PlantImagerError, match=r"no camera 2 on this host \(cameras found: 0: imx296, 1: imx296\)"
    ):
        Picamera2Backend(2)


def test_camera_in_use(backend: Picamera2Backend) -> None:
    with pytest.raises(PlantImagerError, match=r"camera 0 cannot be opened.*Device or resource busy"):
        Picamera2Backend(0)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"buffer_count": 0}, "buffer_count"),
        ({"still_format": "JPEG"}, "still_format"),
        ({"sensor_clock": "realtime"}, "sensor_clock"),
        ({"capture_timeout": 0}, "capture_timeout"),
        ({"hflip": "yes"}, "hflip"),
    ],
)
def test_bad_options_refused(system: object, options: dict, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        Picamera2Backend(0, **options)
    assert not system.in_use(0)


# -- colours ---------------------------------------------------------------------------------------
def _red_system(monkeypatch: pytest.MonkeyPatch) -> object:
    return fake.install(monkeypatch, fake.FakeSensor(scene=fake.solid(RED)))


def _assert_red(image: np.ndarray, what: str) -> None:
    r, g, b = (float(image[..., c].mean()) for c in range(3))
    assert r > 180 and g < 60 and b < 60, f"{what}: mean RGB ({r:.0f}, {g:.0f}, {b:.0f}) is not red"


def test_red_scene_is_red_in_jpeg_png_and_previews(
    monkeypatch: pytest.MonkeyPatch, plantimager_context: zmq.Context, tmp_path: Path
) -> None:
    """Picamera2's RGB888 arrays are BGR: a red scene must still come out red everywhere."""
    cameras = _red_system(monkeypatch)
    spool = Spool(tmp_path / "spool")
    node = CameraNodeServer(
        plantimager_context, LOOPBACK_URL, backends=[Picamera2Backend(0, (640, 480))], spool=spool,
        stream_port=None, node_id="red",
    )  # fmt: skip
    try:
        data, info = node.get_image()
        assert info["format"] == "jpeg"
        _assert_red(simplejpeg.decode_jpeg(bytes(data), colorspace="RGB"), "get_image() JPEG")
        node.encoding = "png"
        data, _ = node.get_image()
        _assert_red(decode_image(bytes(data), "png"), "get_image() PNG")
        record = node.start_capture("red")
        assert record["cameras"][0]["encoding"] == "png"
        jpeg, _ = node.retrieve_stills_jpg("red")
        _assert_red(simplejpeg.decode_jpeg(bytes(jpeg), colorspace="RGB"), "stored still as JPEG")
        raw, info = node.low_res_still()
        _assert_red(np.frombuffer(raw, np.uint8).reshape(info["shape"]), "low_res_still()")
        _assert_red(simplejpeg.decode_jpeg(preview_jpeg(node.slots[0]), colorspace="RGB"), "MJPEG preview")
    finally:
        node.close()
        spool.close()
    assert cameras.held_requests == 0


@pytest.mark.parametrize("still_format", ["RGB888", "BGR888", "XRGB8888", "XBGR8888"])
def test_stills_are_exact_rgb_whatever_the_format(monkeypatch: pytest.MonkeyPatch, still_format: str) -> None:
    fake.install(monkeypatch)
    camera = Picamera2Backend(0, (320, 240), still_format=still_format)
    try:
        frame = camera.capture()
    finally:
        camera.close()
    assert frame.image.flags.c_contiguous and frame.image.dtype == np.uint8
    np.testing.assert_array_equal(frame.image, fake.colour_bars(320, 240, 0))


def test_flips_happen_in_the_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    cameras = fake.install(monkeypatch)
    camera = Picamera2Backend(0, (320, 240), hflip=True, vflip=True)
    try:
        frame = camera.capture()
        assert cameras.opened[0].camera_configuration()["transform"].hflip == 1
    finally:
        camera.close()
    np.testing.assert_array_equal(frame.image, fake.colour_bars(320, 240, 0)[::-1, ::-1])


def test_still_to_rgb_refuses_what_it_cannot_convert() -> None:
    with pytest.raises(PlantImagerError, match="unexpected"):
        still_to_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValidationError, match="unknown still format"):
        still_to_rgb(np.zeros((4, 4, 3), np.uint8), "YUYV")


# -- previews --------------------------------------------------------------------------------------
def test_yuv420_conversion_matches_the_source() -> None:
    rows, cols = np.indices((120, 200))
    image = np.dstack([cols * 255 // 199, rows * 255 // 119, (rows + cols) % 256]).astype(np.uint8)
    buffer = fake.rgb_to_yuv420(image, stride=256)  # padded rows, as the hardware makes them
    assert buffer.shape == (180, 256)
    rgb = yuv420_to_rgb(buffer, 200, 120)
    assert rgb.shape == (120, 200, 3) and rgb.dtype == np.uint8
    error = np.abs(rgb.astype(int) - image.astype(int))
    assert error.mean() < 4, f"mean error {error.mean():.1f}"
    red = yuv420_to_rgb(fake.rgb_to_yuv420(fake.solid(RED)(8, 8), stride=8), 8, 8)
    assert np.abs(red.astype(int) - np.array(RED)).max() <= 3


def test_yuv420_conversion_checks_the_layout() -> None:
    with pytest.raises(ValueError, match="even"):
        yuv420_to_rgb(np.zeros((6, 8), np.uint8), 8, 5)
    with pytest.raises(ValueError, match="shape"):
        yuv420_to_rgb(np.zeros((8, 8), np.uint8), 8, 4)


def test_preview_keeps_the_aspect_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch)
    camera = Picamera2Backend(0, (1280, 720))
    try:
        assert preview_size((1280, 720)) == (640, 360)
        preview = camera.capture_lores()
        assert preview.shape == (480, 640, 3)
        assert preview[:60].max() == 0 and preview[-60:].max() == 0, "16:9 preview not letterboxed"
        assert preview[60:420].max() > 0
        camera.set_resolution(64, 64)  # smaller than a preview: upscaled into it
        small = camera.capture_lores()
        assert small.shape == (480, 640, 3) and small[:, 80:560].max() > 0
    finally:
        camera.close()


def test_fit_preview_centres() -> None:
    out = fit_preview(np.full((240, 240, 3), 200, np.uint8))
    assert out.shape == (480, 640, 3)
    assert out[:, :80].max() == 0 and out[:, 560:].max() == 0 and out[:, 80:560].min() == 200


# -- controls --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("controls", "pattern"),
    [
        (
            {"Shutter": 100},
            r"unknown control 'Shutter' on camera picamera2:0:imx296; known controls: .*ExposureTime",
        ),
        ({"LensPosition": 2.0}, r"unknown control 'LensPosition'"),
        (
            {"ExposureTime": 2_000_000},
            r"control 'ExposureTime' must be a number in \[29, 1000000\], got 2000000",
        ),
        ({"ExposureTime": 1000.5}, r"'ExposureTime'.*whole"),
        ({"AnalogueGain": 0.5}, r"control 'AnalogueGain' must be a number in \[1.0, 16.0\], got 0.5"),
        ({"Brightness": "bright"}, r"control 'Brightness' must be a number in \[-1.0, 1.0\]"),
        ({"Contrast": float("nan")}, r"control 'Contrast' must be a number in \[0.0, 32.0\]"),
        ({"AeEnable": "yes"}, r"control 'AeEnable' must be true or false"),
        ({"ColourGains": [1.5, 40]}, r"control 'ColourGains' must be \[red_gain, blue_gain\].*\[0.0, 32.0\]"),
        ({"ColourGains": 1.5}, r"'ColourGains'"),
        ({"FrameDurationLimits": [50_000, 20_000]}, r"'FrameDurationLimits'.*min_us <= max_us"),
        ({"FrameDurationLimits": [500, 20_000]}, r"'FrameDurationLimits'.*\[1000, 1000000\]"),
        ({"ScalerCrop": [0, 0, 2000, 500]}, r"'ScalerCrop'.*inside \(0, 0, 1456, 1088\)"),
        ({"ScalerCrop": [0, 0, 32, 32]}, r"'ScalerCrop'.*at least 64x64"),
        ({"AwbMode": "sunset"}, r"control 'AwbMode' must be one of auto, incandescent"),
        ({"AwbMode": 9}, r"control 'AwbMode' must be a number in \[0, 7\]"),
    ],
)
def test_bad_controls_are_refused_naming_the_range(
    backend: Picamera2Backend, system: object, controls: dict, pattern: str
) -> None:
    history = list(system.opened[0].control_history)
    with pytest.raises(ValidationError, match=pattern):
        backend.set_controls(controls)
    assert backend.controls == {}
    assert system.opened[0].control_history == history, "something was applied"


def test_nothing_applied_unless_everything_is_valid(picamera_node: CameraNodeServer, system: object) -> None:
    with pytest.raises(ValidationError, match="'ExposureTime'"):
        picamera_node.configure({"controls": {"Brightness": 0.5, "ExposureTime": -1}})
    assert picamera_node.config == {}
    assert all(not camera.control_history for camera in system.opened)


def test_valid_controls_reach_the_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    cameras = fake.install(
        monkeypatch, fake.FakeSensor(model="imx708", resolution=(4608, 2592), autofocus=True)
    )
    camera = Picamera2Backend(0, (640, 360))
    try:
        applied = camera.set_controls(
            {
                "ExposureTime": 4000.0,
                "AnalogueGain": 2,
                "AeEnable": False,
                "AwbEnable": 0,
                "ColourGains": [1.5, 2],
                "AfMode": "Continuous",
                "LensPosition": 3,
                "ScalerCrop": [8, 8, 4000, 2250],
                "FrameDurationLimits": [20_000, 20_000],
            }
        )
        expected = {
            "ExposureTime": 4000,
            "AnalogueGain": 2.0,
            "AeEnable": False,
            "AwbEnable": False,
            "ColourGains": (1.5, 2.0),
            "AfMode": 2,
            "LensPosition": 3.0,
            "ScalerCrop": (8, 8, 4000, 2250),
            "FrameDurationLimits": (20_000, 20_000),
        }
        assert applied == expected == camera.controls
        assert cameras.opened[0].control_history[-1] == expected
        frame = camera.capture()
        assert frame.metadata["ExposureTime"] == 4000 and frame.metadata["FrameDuration"] == 20_000
        assert frame.metadata["LensPosition"] == 3.0
        camera.set_resolution(1280, 720)  # restarting the camera keeps the controls
        assert camera.capture().metadata["ExposureTime"] == 4000
        assert camera.controls == expected
    finally:
        camera.close()


def test_controls_given_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch)
    with pytest.raises(ValidationError, match="'AnalogueGain'"):
        Picamera2Backend(0, (320, 240), controls={"AnalogueGain": 99})
    camera = Picamera2Backend(0, (320, 240), controls={"AnalogueGain": 4})
    try:
        assert camera.capture().metadata["AnalogueGain"] == 4.0
    finally:
        camera.close()


# -- resolution ------------------------------------------------------------------------------------
def test_resolution_is_clamped_and_adjusted(backend: Picamera2Backend, system: object) -> None:
    assert backend.max_resolution == (1456, 1088)
    assert backend.set_resolution(5000, 5000) == (1456, 1088)
    assert backend.capture().image.shape == (1088, 1456, 3)
    assert backend.set_resolution(1001, 751) == (1000, 750)  # libcamera rounds to even sizes
    assert backend.resolution == (1000, 750)
    assert backend.capture().image.shape == (750, 1000, 3)
    with pytest.raises(ValidationError, match="width must be an integer"):
        backend.set_resolution(1.5, 100)
    assert system.opened[0].configure_count == 3


def test_full_resolution_by_default(system: object) -> None:
    camera = Picamera2Backend(1)
    try:
        assert camera.resolution == camera.max_resolution == (1456, 1088)
        assert camera.name == "picamera2:1:imx296"
    finally:
        camera.close()


# -- timing ----------------------------------------------------------------------------------------
def test_a_still_starts_exposing_after_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 9 ms exposures every 10 ms, most frames arriving after a call started before it."""
    fake.install(monkeypatch, fake.FakeSensor(frame_us=10_000, exposure_us=9_000))
    camera = Picamera2Backend(0, (320, 240))
    dropped = 0
    try:
        for _ in range(6):
            called_mono, called_wall = time.monotonic_ns(), time.time_ns()
            frame = camera.capture()
            returned_wall = time.time_ns()
            exposure_ns = frame.metadata["ExposureTime"] * 1000
            assert frame.sensor_timestamp_ns - exposure_ns >= called_mono, (
                "took a frame exposed before the call"
            )
            assert called_wall - 100_000 <= frame.captured_ns <= returned_wall
            assert frame.metadata["time_source"] == "SensorTimestamp (monotonic)"
            assert frame.metadata["clock_mapping_uncertainty_ns"] >= 0  # its size is scheduling, not a goal
            dropped += frame.metadata.get("frames_dropped", 0)
    finally:
        camera.close()
    assert dropped > 0, "no stale frame was ever dropped: the freshness check was not exercised"


def test_frame_wall_clock_is_used_when_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, fake.FakeSensor(wall_clock_metadata=True))
    camera = Picamera2Backend(0, (320, 240))
    try:
        before = time.time_ns()
        frame = camera.capture()
        assert frame.metadata["time_source"] == "FrameWallClock"
        assert before - 100_000 <= frame.captured_ns <= time.time_ns()
    finally:
        camera.close()


def test_stills_stay_fresh_while_previews_are_grabbed(backend: Picamera2Backend, system: object) -> None:
    """Previews grabbed continuously from other threads; every still is a frame exposed after the call."""
    stop = threading.Event()
    errors: list[BaseException] = []
    previews = [0]

    def watch() -> None:
        try:
            while not stop.is_set():
                assert backend.capture_lores().shape == (480, 640, 3)
                previews[0] += 1
        except BaseException as exc:
            errors.append(exc)

    watchers = [threading.Thread(target=watch, daemon=True) for _ in range(2)]
    for thread in watchers:
        thread.start()
    try:
        for _ in range(5):
            called = time.monotonic_ns()
            frame = backend.capture()
            start = frame.sensor_timestamp_ns - frame.metadata["ExposureTime"] * 1000
            assert start >= called, "a still must not be a frame exposed before it was asked for"
    finally:
        stop.set()
        for thread in watchers:
            thread.join(10)
    assert not errors, errors
    assert previews[0] > 0 and not any(t.is_alive() for t in watchers)


def test_closed_camera_refuses_and_is_released(system: object) -> None:
    camera = Picamera2Backend(0, (320, 240))
    camera.close()
    camera.close()  # twice is fine
    assert not system.in_use(0)
    with pytest.raises(PlantImagerError, match="closed"):
        camera.capture()
    with pytest.raises(PlantImagerError, match="closed"):
        camera.capture_lores()
    Picamera2Backend(0, (320, 240)).close()  # the camera can be opened again


# -- a node with defaults ----------------------------------------------------------------------------
def test_run_node_with_the_picamera2_backend_and_defaults(system: object, tmp_path: Path) -> None:
    """``run_node(backend="picamera2")`` serves the camera at full resolution and captures."""
    stop = threading.Event()
    seen: dict[str, object] = {}

    def on_ready(node: CameraNodeServer) -> None:
        try:
            seen["cameras"] = node.cameras()
            seen["record"] = node.start_capture("defaults")
            seen["preview"] = node.low_res_still()[1]["shape"]
        finally:
            stop.set()

    run_node(tmp_path / "spool", backend="picamera2", registry=None, bind="tcp://127.0.0.1:0", stream_port=0,
             state_dir=tmp_path / "state", stop=stop, on_ready=on_ready)  # fmt: skip
    camera = seen["cameras"][0]
    assert camera["backend"] == "picamera2:0:imx296"
    assert camera["resolution"] == camera["max_resolution"] == [1456, 1088]
    stored = seen["record"]["cameras"][0]
    assert stored["resolution"] == [1456, 1088] and stored["controls"]["ExposureTime"] == 2000
    assert seen["preview"] == [480, 640, 3]


def test_optics_come_from_the_sensor_model_and_the_lens_option(monkeypatch):
    fake.install(monkeypatch, fake.FakeSensor(model="imx219", resolution=(3280, 2464)), fake.FakeSensor())
    known = Picamera2Backend(0, (1640, 1232))
    hq = Picamera2Backend(1, (728, 544), focal_mm=6.0)
    try:
        optics = known.optics(known.get_resolution())
        assert optics["model"] == "Camera Module 2 (imx219)"
        assert optics["intrinsics"]["fx"] == pytest.approx(3.04 / (0.00112 * 2))
        # The fake's second module is a Global Shutter camera: no fixed lens, so the option counts.
        k = hq.optics(hq.get_resolution())["intrinsics"]
        assert k["focal_mm"] == 6.0 and k["fx"] == pytest.approx(6.0 / (0.00345 * 2))
    finally:
        known.close()
        hq.close()
    with pytest.raises(ValidationError, match="focal_mm"):
        Picamera2Backend(0, focal_mm=-1)
