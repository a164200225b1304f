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
"""

from __future__ import annotations

import hashlib
import io
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from plantimager.commons.cameradevice import split_stills
from plantimager.commons.errors import (
    ImageUnavailable,
    PlantImagerError,
    RemoteError,
    RPCTimeoutError,
)

from .fixtures import ServedServer, served_client

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

#: Size of ``low_res_still`` images, ``(width, height)``.
LOW_RES = (640, 480)
#: First bytes of every JPEG file (SOI marker and the start of the next marker).
JPEG_MAGIC = b"\xff\xd8\xff"
#: The PNG file signature.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Data codes a node must refuse: path escapes, separators, empty, far too long.
BAD_DATA_CODES = ("../x", "a/b", "", "x" * 10000)
#: Largest mean absolute pixel difference (0..255 scale) tolerated between two encodings of one
#: still when a retrieved file is matched to its camera (decoders differ slightly).
PIXEL_TOLERANCE = 2.0
#: Earliest accepted capture time before the requested instant, in seconds.
SCHEDULE_SLACK = 0.002
#: How far ahead a scheduled capture is requested, in seconds.
SCHEDULE_AHEAD = 0.05

_CONTRACT_MARK = pytest.mark.plantimager_contract
_RPC_MARK = pytest.mark.plantimager_over_rpc


# -- helpers -------------------------------------------------------------------------------------
def new_data_code(tag: str) -> str:
    """A data code unique to this call, valid for any node (``kit-<tag>-<hex>``)."""
    return f"kit-{tag}-{uuid.uuid4().hex[:12]}"


def decode_raw_rgb(data: Any, info: dict, what: str) -> np.ndarray:
    """Turn a raw still (``(buffer, info)``) into a ``(height, width, 3)`` uint8 array, checking it.

    Parameters
    ----------
    data : bytes-like
        The pixels.
    info : dict
        Metadata with ``shape`` (``[height, width, 3]``) and optionally ``dtype`` (``"uint8"``).
    what : str
        Name of the call, for messages.

    Returns
    -------
    numpy.ndarray
        The image, sharing memory with ``data``.
    """
    assert isinstance(info, dict), f"{what}: info must be a dict, got {type(info).__name__}"
    shape = info.get("shape")
    assert isinstance(shape, (list, tuple)) and len(shape) == 3, (
        f"{what}: info['shape'] must be [height, width, 3], got {shape!r}"
    )
    assert all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape), (
        f"{what}: info['shape'] must hold positive ints, got {shape!r}"
    )
    assert shape[2] == 3, f"{what}: expected 3 colour channels (RGB), info['shape'] is {shape!r}"
    dtype = info.get("dtype", "uint8")
    assert np.dtype(dtype) == np.uint8, f"{what}: pixels must be uint8, info['dtype'] is {dtype!r}"
    view = memoryview(data)
    assert view.nbytes == math.prod(shape), (
        f"{what}: buffer holds {view.nbytes} bytes but shape {list(shape)} needs {math.prod(shape)}"
    )
    pixels = np.frombuffer(view.cast("B") if view.format != "B" else view, dtype=np.uint8)
    array = pixels.reshape(tuple(shape))
    image = Image.fromarray(array)
    assert image.mode == "RGB", f"{what}: the pixels do not form an RGB image (mode {image.mode})"
    return array  # uint8: every value is within 0..255 by construction


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).mean())


def _check_files(parts: Sequence[memoryview], magic: bytes, pil_format: str, what: str) -> list[bytes]:
    files = []
    for i, part in enumerate(parts):
        blob = bytes(part)
        assert len(blob) > 0, f"{what}: file {i} is empty"
        assert blob.startswith(magic), (
            f"{what}: file {i} is not {pil_format} (starts with {blob[:8]!r}, expected {magic!r})"
        )
        with Image.open(io.BytesIO(blob)) as image:
            assert image.format == pil_format, f"{what}: Pillow reads file {i} as {image.format}"
            width, height = image.size
            assert width > 0 and height > 0, f"{what}: file {i} has size {image.size}"
        files.append(blob)
    return files


def _assert_camera_order(files: Sequence[bytes], stored: Sequence[bytes], what: str) -> None:
    """Each retrieved file ``i`` must be the still of camera ``i`` (``retrieve_still(code, i)``).

    Identical bytes match at once; otherwise (the node re-encoded the still) both are decoded and
    file ``i`` must be at least as close to camera ``i``'s still as to any other camera's, within
    :data:`PIXEL_TOLERANCE`.
    """
    decoded_stored: list[np.ndarray | None] = [None] * len(stored)
    for i, blob in enumerate(files):
        if blob == stored[i]:
            continue
        pixels = _decoded(blob)
        distances = []
        for j, original in enumerate(stored):
            if decoded_stored[j] is None:
                decoded_stored[j] = _decoded(original)
            distances.append(_distance(pixels, decoded_stored[j]))
        nearest = min(range(len(stored)), key=distances.__getitem__)
        assert distances[i] <= distances[nearest] + PIXEL_TOLERANCE, (
            f"{what}: file {i} is not camera {i}'s still: it matches camera {nearest}'s "
            f"(mean pixel difference {distances[nearest]:.2f}, against {distances[i]:.2f} for camera {i}); "
            "files must come in camera order"
        )


# RemoteError and its bases: what every remote failure is, whatever the remote side raised.
_REMOTE_LINE = frozenset(RemoteError.__mro__)


def _expect_refusal(call: Any, what: str) -> None:
    """``call()`` must raise a clear refusal (see :func:`_is_clear_refusal`) with a message."""
    try:
        call()
    except Exception as exc:
        assert _is_clear_refusal(exc), (
            f"{what} failed with {type(exc).__name__}: {exc}; expected a ValueError or an error "
            "of plantimager.commons.errors"
        )
        assert str(exc).strip(), f"{what} was refused without a message"
    else:
        pytest.fail(f"{what} was accepted; a bad data code must be refused")


def _is_clear_refusal(exc: BaseException) -> bool:
    """A refusal the caller can act on: ValueError or one of our errors naming a real cause."""
    if isinstance(exc, ValueError):
        return True
    if isinstance(exc, RPCTimeoutError):
        return False
    if isinstance(exc, RemoteError):  # judge what the remote side raised, kept as a second base
        return any(_is_ours(base) for base in type(exc).__mro__)
    return isinstance(exc, PlantImagerError)


def _is_ours(kind: type) -> bool:
    """A kind of error of plantimager.commons.errors, not merely "failed remotely"."""
    return (
        issubclass(kind, PlantImagerError) and not issubclass(kind, RemoteError) and kind not in _REMOTE_LINE
    )


# -- camera --------------------------------------------------------------------------------------
class CameraContract:
    """Contract of the per-camera operations (PEPI's camera contract, with its gaps closed).

    Provide a ``camera`` fixture: an object with ``still``, ``low_res_still``,
    ``get_max_resolution``, ``get_current_resolution`` and ``set_resolution`` as in
    :class:`~plantimager.commons.cameradevice.CameraNode`, acting on camera 0 by default (a
    ``CameraNode`` itself qualifies). Each test should get a fresh camera.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK]

    @pytest.fixture
    def camera(self) -> Any:
        """The camera under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `camera` fixture returning the camera under test",
            pytrace=False,
        )

    def test_still(self, camera: Any) -> None:
        """``still()`` returns uint8 RGB pixels whose shape is given in the metadata."""
        data, info = camera.still()
        decode_raw_rgb(data, info, "still()")

    def test_low_res_still(self, camera: Any) -> None:
        """``low_res_still()`` is exactly 640x480 RGB."""
        data, info = camera.low_res_still()
        array = decode_raw_rgb(data, info, "low_res_still()")
        height, width, _ = array.shape
        assert (width, height) == LOW_RES, f"low_res_still() is {width}x{height}, expected 640x480"

    def test_max_resolution(self, camera: Any) -> None:
        """``get_max_resolution()`` is ``[width, height]``, two positive ints, and the current one fits."""
        maximum = camera.get_max_resolution()
        _assert_resolution(maximum, "get_max_resolution()")
        current = camera.get_current_resolution()
        _assert_resolution(current, "get_current_resolution()")
        assert current[0] <= maximum[0] and current[1] <= maximum[1], (
            f"current resolution {current} exceeds the maximum {maximum}"
        )

    def test_set_resolution(self, camera: Any) -> None:
        """1280x720 is honoured, or clamped to the maximum; the maximum is unchanged; stills follow."""
        maximum = list(camera.get_max_resolution())
        expected = [min(1280, maximum[0]), min(720, maximum[1])]
        applied = camera.set_resolution(x=1280, y=720)
        current = list(camera.get_current_resolution())
        honoured = "honoured" if expected == [1280, 720] else f"clamped to the maximum {maximum}"
        assert current == expected, (
            f"after set_resolution(1280, 720) the resolution is {current}; expected {expected} "
            f"(the request {honoured})"
        )
        assert list(applied) == current, (
            f"set_resolution() returned {applied!r} but get_current_resolution() is {current}"
        )
        assert list(camera.get_max_resolution()) == maximum, "set_resolution() changed the maximum resolution"
        data, info = camera.still()
        array = decode_raw_rgb(data, info, "still() after set_resolution()")
        assert [array.shape[1], array.shape[0]] == current, (
            f"still() is {array.shape[1]}x{array.shape[0]} but the current resolution is {current}"
        )

    def test_set_resolution_beyond_max_is_clamped(self, camera: Any) -> None:
        """A request larger than the maximum is clamped to it, not refused nor honoured."""
        maximum = list(camera.get_max_resolution())
        applied = camera.set_resolution(x=maximum[0] * 2, y=maximum[1] * 2)
        current = list(camera.get_current_resolution())
        assert current == maximum, (
            f"set_resolution({maximum[0] * 2}, {maximum[1] * 2}) gave {current}; "
            f"expected the maximum {maximum}"
        )
        assert list(applied) == current, f"set_resolution() returned {applied!r}, applied {current}"

    def test_low_res_still_ignores_resolution(self, camera: Any) -> None:
        """``low_res_still()`` stays 640x480 whatever the still resolution (here 1280x720 or less)."""
        camera.set_resolution(x=1280, y=720)
        data, info = camera.low_res_still()
        array = decode_raw_rgb(data, info, "low_res_still() after set_resolution(1280, 720)")
        height, width, _ = array.shape
        assert (width, height) == LOW_RES, (
            f"low_res_still() is {width}x{height} after set_resolution(1280, 720), expected 640x480"
        )


def _assert_resolution(value: Any, what: str) -> None:
    assert isinstance(value, (list, tuple)) and len(value) == 2, (
        f"{what} must be [width, height], got {value!r}"
    )
    assert all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value), (
        f"{what} must hold two positive ints, got {value!r}"
    )


# -- node ----------------------------------------------------------------------------------------
class NodeContract:
    """Contract of a camera node (PEPI's server contract, with its gaps closed).

    Provide a ``node`` fixture: an object implementing
    :class:`~plantimager.commons.cameradevice.CameraNode`, fresh for each test.

    ``test_shutdown_is_accepted`` calls ``shutdown()`` on the ``disposable_node`` fixture, which by
    default is the (fresh) ``node`` of that test. If your ``node`` fixture is shared between tests,
    override ``disposable_node`` to give a node that may be shut down.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK]

    #: Methods that take no argument, as ``enumerate_methods()`` must report them.
    NO_ARGUMENT_METHODS: ClassVar[tuple[str, ...]] = ("ping", "identify", "stream_urls", "shutdown")
    #: Methods ``enumerate_methods()`` must list.
    LISTED_METHODS: ClassVar[tuple[str, ...]] = (
        "start_capture",
        "retrieve_stills_jpg",
        "retrieve_stills_png",
        "enumerate_methods",
    )

    @pytest.fixture
    def node(self) -> Any:
        """The node under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `node` fixture returning the node under test",
            pytrace=False,
        )

    @pytest.fixture
    def disposable_node(self, request: pytest.FixtureRequest) -> Any:
        """A node that may be shut down; by default this test's own ``node``."""
        return request.getfixturevalue("node")

    def after_shutdown(self, node: Any, request: pytest.FixtureRequest) -> None:
        """Check that ``node`` really stopped after ``shutdown()`` returned (hook; default: nothing).

        Override to add what your implementation can show (a closed camera, a released port...).
        :class:`NodeOverRPC` checks that the server stops serving.
        """

    # -- identity -----------------------------------------------------------------------------
    def test_ping(self, node: Any) -> None:
        """``ping()`` returns ``True`` itself (not merely something truthy)."""
        answer = node.ping()
        assert answer is True, f"ping() returned {answer!r}, expected True"

    def test_identify(self, node: Any) -> None:
        """``identify()`` is a non-empty string, the same on every call."""
        first = node.identify()
        assert isinstance(first, str) and first, f"identify() returned {first!r}, expected a non-empty str"
        second = node.identify()
        assert second == first, f"identify() changed between calls: {first!r} then {second!r}"

    def test_cameras_in_order(self, node: Any) -> None:
        """``cameras()`` lists at least one camera; entry ``i`` has ``index == i`` and a unique name."""
        cameras = node.cameras()
        assert isinstance(cameras, list) and cameras, f"cameras() returned {cameras!r}, expected a list"
        for i, camera in enumerate(cameras):
            assert isinstance(camera, dict), f"cameras()[{i}] is {camera!r}, expected a dict"
            assert camera.get("index") == i, f"cameras()[{i}] has index {camera.get('index')!r}"
            name = camera.get("name")
            assert isinstance(name, str) and name, f"cameras()[{i}] has no name: {camera!r}"
        names = [camera["name"] for camera in cameras]
        assert len(set(names)) == len(names), f"camera names are not unique: {names}"

    def test_stream_urls(self, node: Any) -> None:
        """``stream_urls()`` gives one http(s) URL per camera, in camera order."""
        urls = node.stream_urls()
        cameras = node.cameras()
        assert isinstance(urls, list), f"stream_urls() returned {type(urls).__name__}, expected a list"
        assert len(urls) == len(cameras), f"{len(urls)} stream URLs for {len(cameras)} cameras: {urls}"
        for i, url in enumerate(urls):
            assert isinstance(url, str), f"stream URL {i} is {url!r}, expected a str"
            parts = urlsplit(url)
            assert parts.scheme in ("http", "https") and parts.netloc, (
                f"stream URL {i} is {url!r}, expected http://host... or https://host..."
            )
            listed = cameras[i].get("stream_url")
            if listed is not None:
                assert listed == url, (
                    f"cameras()[{i}]['stream_url'] is {listed!r} but stream_urls()[{i}] is {url!r}"
                )

    # -- capture and retrieval ----------------------------------------------------------------
    def _capture(self, node: Any, tag: str) -> tuple[str, dict, int]:
        code = new_data_code(tag)
        record = node.start_capture(code)
        names = _camera_names(node)
        _assert_record(record, code, names, "start_capture()")
        return code, record, len(names)

    def _retrieve_checked(self, node: Any, fmt: str) -> None:
        method, magic, pil_format = {
            "jpeg": ("retrieve_stills_jpg", JPEG_MAGIC, "JPEG"),
            "png": ("retrieve_stills_png", PNG_MAGIC, "PNG"),
        }[fmt]
        code, _, count = self._capture(node, fmt)
        stored = [bytes(node.retrieve_still(code, i)[0]) for i in range(count)]
        data, info = getattr(node, method)(code)
        what = f"{method}({code!r})"
        assert isinstance(info, dict), f"{what}: info must be a dict, got {info!r}"
        assert info.get("format") == fmt, (
            f"{what}: info['format'] is {info.get('format')!r}, expected {fmt!r}"
        )
        sizes = info.get("sizes")
        assert isinstance(sizes, list) and len(sizes) == count, (
            f"{what}: info['sizes'] is {sizes!r}, expected one size per camera ({count})"
        )
        cameras = info.get("cameras")
        assert isinstance(cameras, list) and len(cameras) == count, (
            f"{what}: info['cameras'] is {cameras!r}, expected one entry per camera ({count})"
        )
        files = _check_files(split_stills(data, info), magic, pil_format, what)
        _assert_camera_order(files, stored, what)

    def test_capture_to_jpegs(self, node: Any) -> None:
        """After ``start_capture``, ``retrieve_stills_jpg`` gives one JPEG per camera, in camera order."""
        self._retrieve_checked(node, "jpeg")

    def test_capture_to_pngs(self, node: Any) -> None:
        """After ``start_capture``, ``retrieve_stills_png`` gives one PNG per camera, in camera order."""
        self._retrieve_checked(node, "png")

    def test_capture_record_describes_stored_stills(self, node: Any) -> None:
        """Each camera's entry in the capture record gives the size and SHA-256 of what is stored."""
        code, record, count = self._capture(node, "record")
        for i in range(count):
            data, info = node.retrieve_still(code, i)
            blob = bytes(data)
            entry = record["cameras"][i]
            assert isinstance(info, dict), f"retrieve_still({code!r}, {i}): info must be a dict"
            assert entry.get("size") == len(blob), (
                f"camera {i}: record size {entry.get('size')!r}, stored file has {len(blob)} bytes"
            )
            assert entry.get("sha256") == hashlib.sha256(blob).hexdigest(), (
                f"camera {i}: record sha256 does not match the stored file"
            )

    def test_unknown_data_code(self, node: Any) -> None:
        """Retrieving an unknown data code raises ``ImageUnavailable``; the node stays usable."""
        code = new_data_code("unknown")
        for method in ("retrieve_stills_jpg", "retrieve_stills_png"):
            with pytest.raises(ImageUnavailable):
                getattr(node, method)(code)
        with pytest.raises(ImageUnavailable):
            node.retrieve_still(code, 0)
        assert node.ping() is True, "the node stopped answering after refusing an unknown data code"

    def test_retrieve_is_not_one_shot(self, node: Any) -> None:
        """Retrieving twice gives the same bytes; only ``release`` deletes a capture."""
        code, _, count = self._capture(node, "twice")
        for method in ("retrieve_stills_jpg", "retrieve_stills_png"):
            first = bytes(getattr(node, method)(code)[0])
            second = bytes(getattr(node, method)(code)[0])
            assert first == second, f"{method}({code!r}) gave different bytes the second time"
        first = bytes(node.retrieve_still(code, 0)[0])
        assert bytes(node.retrieve_still(code, 0)[0]) == first, "retrieve_still() changed on a second call"
        assert sorted(node.pending().get(code, [])) == list(range(count)), (
            f"pending() does not list every camera under {code!r} after retrieval: {node.pending()!r}"
        )
        released = node.release(code)
        assert released == count, f"release({code!r}) reported {released!r} captures, expected {count}"
        for method in ("retrieve_stills_jpg", "retrieve_stills_png"):
            with pytest.raises(ImageUnavailable):
                getattr(node, method)(code)
        with pytest.raises(ImageUnavailable):
            node.retrieve_still(code, 0)
        assert code not in node.pending(), f"{code!r} is still pending after release()"

    def test_capture_again_overwrites(self, node: Any) -> None:
        """A second capture under the same code replaces the first: one still per camera, the new one."""
        code, first, count = self._capture(node, "again")
        second = node.start_capture(code)
        _assert_record(second, code, _camera_names(node), "second start_capture()")
        for i in range(count):
            before, after = first["cameras"][i]["captured_at"], second["cameras"][i]["captured_at"]
            assert after >= before, f"camera {i}: second capture at {after} precedes the first at {before}"
            blob = bytes(node.retrieve_still(code, i)[0])
            assert hashlib.sha256(blob).hexdigest() == second["cameras"][i].get("sha256"), (
                f"camera {i}: the stored still is not the one of the second capture"
            )
        assert sorted(node.pending().get(code, [])) == list(range(count)), (
            f"pending() after capturing twice: {node.pending()!r}"
        )
        data, info = node.retrieve_stills_jpg(code)
        files = split_stills(data, info)
        assert len(files) == count, (
            f"{len(files)} stills under {code!r} after capturing twice, expected {count}"
        )

    def test_scheduled_capture(self, node: Any) -> None:
        """``start_capture(code, at=t)`` fires no earlier than ``t`` and reports each actual time."""
        code = new_data_code("at")
        names = _camera_names(node)
        at = time.time() + SCHEDULE_AHEAD
        record = node.start_capture(code, at=at)
        returned = time.time()
        _assert_record(record, code, names, "start_capture(at=...)")
        requested = record.get("requested_at")
        assert requested is not None and abs(requested - at) < 1e-3, (
            f"record['requested_at'] is {requested!r}, expected {at}"
        )
        for i, entry in enumerate(record["cameras"]):
            actual = entry.get("captured_at")
            assert isinstance(actual, (int, float)), f"camera {i}: captured_at is {actual!r}"
            assert actual >= at - SCHEDULE_SLACK, (
                f"camera {i} captured {(at - actual) * 1000:.1f} ms before the requested instant"
            )
            assert actual <= returned + SCHEDULE_SLACK, f"camera {i}: captured_at {actual} is in the future"

    def test_enumerate_methods(self, node: Any) -> None:
        """``enumerate_methods()`` maps names to argument lists; the no-argument ones map to ``[]``."""
        methods = node.enumerate_methods()
        assert isinstance(methods, dict), f"enumerate_methods() returned {type(methods).__name__}"
        for name, args in methods.items():
            assert isinstance(name, str), f"method name {name!r} is not a str"
            assert isinstance(args, list) and all(isinstance(a, str) for a in args), (
                f"arguments of {name!r} are {args!r}, expected a list of str"
            )
        for name in self.NO_ARGUMENT_METHODS:
            assert methods.get(name) == [], (
                f"enumerate_methods()[{name!r}] is {methods.get(name)!r}, expected []"
            )
        missing = [name for name in self.LISTED_METHODS if name not in methods]
        assert not missing, f"enumerate_methods() does not list {missing}"

    def test_bad_data_codes_refused(self, node: Any) -> None:
        """Path escapes, separators, empty and huge data codes are refused clearly; nothing is stored.

        Capturing under such a code must fail with a ``ValueError`` or an error of
        :mod:`plantimager.commons.errors` that has a message; so must retrieving under it
        (``ImageUnavailable`` qualifies), never with an unrelated error such as a file system one.
        """
        before = node.pending()
        for code in BAD_DATA_CODES:
            shown = code if len(code) < 20 else f"{code[:8]}...({len(code)} characters)"
            _expect_refusal(lambda code=code: node.start_capture(code), f"start_capture({shown!r})")
            _expect_refusal(
                lambda code=code: node.retrieve_stills_jpg(code), f"retrieve_stills_jpg({shown!r})"
            )
            _expect_refusal(lambda code=code: node.retrieve_still(code, 0), f"retrieve_still({shown!r}, 0)")
        after = node.pending()
        assert after == before, f"refused captures left something stored: {before!r} -> {after!r}"
        assert node.ping() is True, "the node stopped answering after refusing bad data codes"

    def test_shutdown_is_accepted(self, disposable_node: Any, request: pytest.FixtureRequest) -> None:
        """``shutdown()`` is accepted and returns (then :meth:`after_shutdown` checks more)."""
        result = disposable_node.shutdown()
        assert result is None, f"shutdown() returned {result!r}, expected None"
        self.after_shutdown(disposable_node, request)


def _camera_names(node: Any) -> list[str]:
    return [camera["name"] for camera in node.cameras()]


def _assert_record(record: Any, code: str, names: Sequence[str], what: str) -> None:
    """A capture record: the data code, then one entry per camera, in camera order, with its time.

    An entry names its camera by ``index`` (its position in ``cameras()``) or by ``camera`` (its name).
    """
    assert isinstance(record, dict), f"{what} returned {type(record).__name__}, expected a dict"
    assert record.get("data_code") == code, (
        f"{what}: data_code is {record.get('data_code')!r}, expected {code!r}"
    )
    cameras = record.get("cameras")
    assert isinstance(cameras, list) and len(cameras) == len(names), (
        f"{what}: expected one entry per camera ({len(names)}) under 'cameras', got {cameras!r}"
    )
    for i, entry in enumerate(cameras):
        assert isinstance(entry, dict), f"{what}: cameras[{i}] is {entry!r}"
        assert entry.get("index") == i or entry.get("camera") == names[i], (
            f"{what}: cameras[{i}] is not camera {i} ({names[i]!r}): index {entry.get('index')!r}, "
            f"camera {entry.get('camera')!r}"
        )
        assert isinstance(entry.get("captured_at"), (int, float)), (
            f"{what}: cameras[{i}] has no captured_at time: {entry!r}"
        )


# -- over RPC ------------------------------------------------------------------------------------
_SERVED_KEY = pytest.StashKey[dict[int, ServedServer]]()


class CameraOverRPC(CameraContract):
    """:class:`CameraContract` run through an RPC client.

    Provide a ``local_camera`` fixture: an ``RPCServer`` implementing the per-camera operations
    of ``CameraNode`` (a node server qualifies), constructed on ``tcp://127.0.0.1:0`` and not
    serving yet. Each test serves it in a thread and gets a client proxy as ``camera``; the server
    is stopped and its thread joined after the test.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK, _RPC_MARK]

    @pytest.fixture
    def local_camera(self) -> Any:
        """The server under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `local_camera` fixture returning an RPCServer "
            "(constructed on tcp://127.0.0.1:0, not serving)",
            pytrace=False,
        )

    @pytest.fixture
    def camera(self, local_camera: Any) -> Iterator[Any]:
        """A client proxy of ``local_camera``, served for the duration of the test."""
        with served_client(local_camera) as (client, _):
            yield client


class NodeOverRPC(NodeContract):
    """:class:`NodeContract` run through an RPC client.

    Provide a ``local_node`` fixture: an ``RPCServer`` implementing ``CameraNode``, constructed on
    ``tcp://127.0.0.1:0`` and not serving yet. Each test serves it in a thread and gets a client
    proxy as ``node``; the server is stopped and its thread joined after the test. Over RPC,
    ``shutdown()`` must also make the server stop serving.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK, _RPC_MARK]

    #: Seconds the server may take to stop serving after ``shutdown()`` returned.
    shutdown_timeout: ClassVar[float] = 10.0

    @pytest.fixture
    def local_node(self) -> Any:
        """The server under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `local_node` fixture returning an RPCServer "
            "(constructed on tcp://127.0.0.1:0, not serving)",
            pytrace=False,
        )

    @pytest.fixture
    def node(self, local_node: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
        """A client proxy of ``local_node``, served for the duration of the test."""
        with served_client(local_node) as (client, served):
            request.node.stash.setdefault(_SERVED_KEY, {})[id(client)] = served
            yield client

    def after_shutdown(self, node: Any, request: pytest.FixtureRequest) -> None:
        """The server stops serving after ``shutdown()`` (checked when the kit serves ``node``)."""
        served = request.node.stash.get(_SERVED_KEY, {}).get(id(node))
        if served is None:
            return
        assert served.wait_stopped(self.shutdown_timeout), (
            f"the node server still serves {self.shutdown_timeout} s after shutdown() returned"
        )
