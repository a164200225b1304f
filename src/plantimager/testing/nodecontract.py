"""The node contract: identity, capture, retrieval, release, data-code checks and shutdown of a node."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from plantimager.commons.cameradevice import split_stills
from plantimager.commons.errors import (
    ImageUnavailable,
)

from .checks import (
    BAD_DATA_CODES,
    CONTRACT_MARK,
    JPEG_MAGIC,
    PNG_MAGIC,
    RPC_MARK,
    SCHEDULE_AHEAD,
    SCHEDULE_SLACK,
    SERVED_KEY,
    assert_camera_order,
    assert_record,
    camera_names,
    check_files,
    expect_refusal,
    new_data_code,
)
from .fixtures import served_client

__all__ = ["NodeContract", "NodeOverRPC"]


class NodeContract:
    """Contract of a camera node (PEPI's server contract, with its gaps closed).

    Provide a ``node`` fixture: an object implementing
    :class:`~plantimager.commons.cameradevice.CameraNode`, fresh for each test.

    ``test_shutdown_is_accepted`` calls ``shutdown()`` on the ``disposable_node`` fixture, which by
    default is the (fresh) ``node`` of that test. If your ``node`` fixture is shared between tests,
    override ``disposable_node`` to give a node that may be shut down.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [CONTRACT_MARK]

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
        names = camera_names(node)
        assert_record(record, code, names, "start_capture()")
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
        files = check_files(split_stills(data, info), magic, pil_format, what)
        assert_camera_order(files, stored, what)

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

    def test_release_many(self, node: Any) -> None:
        """``release_many`` deletes what it names, across data codes, and reports what is not stored."""
        first, _, count = self._capture(node, "many1")
        second, _, _ = self._capture(node, "many2")
        unknown = new_data_code("many-unknown")
        answer = node.release_many({first: None, second: [0], unknown: [0]})
        assert isinstance(answer, dict), f"release_many() returned {answer!r}, expected a dict"
        assert answer.get("released") == count + 1, (
            f"release_many() reported {answer.get('released')!r} images deleted, expected {count + 1} "
            f"(every camera of {first!r}, camera 0 of {second!r})"
        )
        assert answer.get("missing") == {unknown: [0]}, (
            f"release_many()['missing'] is {answer.get('missing')!r}, expected {{{unknown!r}: [0]}}"
        )
        pending = node.pending()
        assert first not in pending, f"{first!r} is still pending after release_many(): {pending!r}"
        left = list(range(1, count))
        assert sorted(pending.get(second, [])) == left, (
            f"after releasing camera 0 of {second!r}, pending() lists {pending.get(second)!r}, "
            f"expected {left}"
        )
        with pytest.raises(ImageUnavailable):
            node.retrieve_still(second, 0)
        for camera in left:
            assert bytes(node.retrieve_still(second, camera)[0]), f"camera {camera} of {second!r} is gone"
        again = node.release_many({first: None})
        assert again == {"released": 0, "missing": {first: None}}, (
            f"releasing {first!r} a second time answered {again!r}, expected nothing deleted and "
            f"{{{first!r}: None}} missing"
        )
        if left:
            node.release(second)

    def test_capture_again_overwrites(self, node: Any) -> None:
        """A second capture under the same code replaces the first: one still per camera, the new one."""
        code, first, count = self._capture(node, "again")
        second = node.start_capture(code)
        assert_record(second, code, camera_names(node), "second start_capture()")
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
        names = camera_names(node)
        at = time.time() + SCHEDULE_AHEAD
        record = node.start_capture(code, at=at)
        returned = time.time()
        assert_record(record, code, names, "start_capture(at=...)")
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
            expect_refusal(lambda code=code: node.start_capture(code), f"start_capture({shown!r})")
            expect_refusal(
                lambda code=code: node.retrieve_stills_jpg(code), f"retrieve_stills_jpg({shown!r})"
            )
            expect_refusal(lambda code=code: node.retrieve_still(code, 0), f"retrieve_still({shown!r}, 0)")
        after = node.pending()
        assert after == before, f"refused captures left something stored: {before!r} -> {after!r}"
        assert node.ping() is True, "the node stopped answering after refusing bad data codes"

    def test_shutdown_is_accepted(self, disposable_node: Any, request: pytest.FixtureRequest) -> None:
        """``shutdown()`` is accepted and returns (then :meth:`after_shutdown` checks more)."""
        result = disposable_node.shutdown()
        assert result is None, f"shutdown() returned {result!r}, expected None"
        self.after_shutdown(disposable_node, request)


class NodeOverRPC(NodeContract):
    """:class:`NodeContract` run through an RPC client.

    Provide a ``local_node`` fixture: an ``RPCServer`` implementing ``CameraNode``, constructed on
    ``tcp://127.0.0.1:0`` and not serving yet. Each test serves it in a thread and gets a client
    proxy as ``node``; the server is stopped and its thread joined after the test. Over RPC,
    ``shutdown()`` must also make the server stop serving.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [CONTRACT_MARK, RPC_MARK]

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
            request.node.stash.setdefault(SERVED_KEY, {})[id(client)] = served
            yield client

    def after_shutdown(self, node: Any, request: pytest.FixtureRequest) -> None:
        """The server stops serving after ``shutdown()`` (checked when the kit serves ``node``)."""
        served = request.node.stash.get(SERVED_KEY, {}).get(id(node))
        if served is None:
            return
        assert served.wait_stopped(self.shutdown_timeout), (
            f"the node server still serves {self.shutdown_timeout} s after shutdown() returned"
        )
