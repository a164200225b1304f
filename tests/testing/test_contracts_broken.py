"""The kit catches broken implementations: each defect makes exactly the contract tests it should fail.

``ReferenceNode`` below is a small, correct, in-memory camera node written independently of our own
node (so the contracts are shown to be satisfiable by a third party). Each ``...Node`` subclass
breaks one promise. Every case runs a contract against one node in a separate pytest session
(``pytester``) and checks the outcome counts and the names of the failed tests.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import re
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from PIL import Image

from plantimager.commons.cameradevice import Camera, CameraNode
from plantimager.commons.errors import ImageUnavailable, ValidationError
from plantimager.commons.RPC import RPCServer
from plantimager.testing import CameraContract, NodeContract
from plantimager.testing.fixtures import (
    LOOPBACK_URL,
    NodeClient,
    checked_context,
    client_class,
    serve_in_thread,
)

pytest_plugins = ["pytester"]

_CODE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


# -- a correct node, independent of plantimager.camera -------------------------------------------
class OldReferenceNode(CameraNode, RPCServer):
    """A minimal correct camera node from before ``release_many``, which it does not serve over RPC.

    Synthetic cameras, captures kept in memory as JPEG files. Called in-process, ``release_many``
    is the interface's default, built on ``release``.
    """

    MAX_RESOLUTION = (1920, 1080)

    def __init__(self, context: zmq.Context, url: str = LOOPBACK_URL, count: int = 2) -> None:
        RPCServer.__init__(self, context, url)
        self._count = count
        self._resolutions = [[320, 240] for _ in range(count)]
        self._store: dict[str, dict[int, tuple[bytes, dict]]] = {}
        self._lock = threading.Lock()
        self._shots = 0

    # helpers
    def _frame(self, camera: int, width: int, height: int) -> np.ndarray:
        """Camera ``camera``'s view: its own tint and stripes, plus a mark that changes every shot."""
        self._shots += 1
        rows, cols = np.indices((height, width))
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[..., 0] = (cols * 255 // max(width - 1, 1) + 120 * camera) % 256
        image[..., 1] = ((rows // 16) % 2) * (80 + 150 * camera)
        image[..., 2] = 200 - 180 * camera
        image[:8, :8] = self._shots % 256
        return image

    @staticmethod
    def _jpeg(image: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="JPEG", quality=90)
        return out.getvalue()

    def _stored(self, data_code: str) -> dict[int, tuple[bytes, dict]]:
        try:
            return self._store[data_code]
        except KeyError:
            raise ImageUnavailable(f"nothing is stored under data code {data_code!r}") from None

    def _files(self, data_code: str) -> list[bytes]:
        return [data for _, (data, _) in sorted(self._stored(data_code).items())]

    def _bundle(self, files: list[bytes], fmt: str) -> tuple[memoryview, dict]:
        info = {"cameras": list(range(len(files))), "sizes": [len(f) for f in files], "format": fmt}
        return memoryview(b"".join(files)), info

    @staticmethod
    def _as_png(jpeg: bytes) -> bytes:
        out = io.BytesIO()
        with Image.open(io.BytesIO(jpeg)) as image:
            image.save(out, format="PNG", compress_level=1)
        return out.getvalue()

    @staticmethod
    def _wait_until(at: float) -> None:
        remaining = at - time.time()
        if remaining > 0:
            threading.Event().wait(remaining)
        while time.time() < at:  # the wait may end a hair early
            pass

    def _check_code(self, data_code: Any) -> None:
        if not isinstance(data_code, str) or not _CODE_RE.fullmatch(data_code):
            shown = data_code if len(str(data_code)) < 40 else f"{str(data_code)[:20]}..."
            raise ValidationError(f"invalid data code {shown!r}: use 1 to 128 of [A-Za-z0-9._-]")

    # CameraNode
    @RPCServer.register_method_json
    def ping(self) -> bool:
        return True

    @RPCServer.register_method_json
    def identify(self) -> str:
        return "reference-node"

    @RPCServer.register_method_json
    def stream_urls(self) -> list[str]:
        return [f"http://127.0.0.1:9/cam{i}.mjpg" for i in range(self._count)]

    @RPCServer.register_method_json
    def shutdown(self) -> None:
        self.stop_server()

    @RPCServer.register_method_json
    def start_capture(self, data_code: str, at: float | None = None) -> dict:
        self._check_code(data_code)
        if at is not None:
            self._wait_until(at)
        files, entries = [], []
        for i in range(self._count):
            captured_at = time.time()
            data = self._jpeg(self._frame(i, *self._resolutions[i]))
            meta = {
                "camera": f"cam{i}",
                "index": i,
                "captured_at": captured_at,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            files.append((data, meta))
            entries.append(meta)
        self._put(data_code, files)
        return {"data_code": data_code, "requested_at": at, "cameras": entries}

    def _put(self, data_code: str, files: list[tuple[bytes, dict]]) -> None:
        with self._lock:
            self._store[data_code] = dict(enumerate(files))

    @RPCServer.register_method_buffer
    def retrieve_stills_jpg(self, data_code: str) -> tuple[memoryview, dict]:
        return self._bundle(self._files(data_code), "jpeg")

    @RPCServer.register_method_buffer
    def retrieve_stills_png(self, data_code: str) -> tuple[memoryview, dict]:
        return self._bundle([self._as_png(data) for data in self._files(data_code)], "png")

    @RPCServer.register_method_json
    def enumerate_methods(self) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(getattr(self, name)).parameters)
            for name in self.inventory()["json_methods"] | self.inventory()["buffer_methods"]
        }

    @RPCServer.register_method_buffer
    def still(self, camera: int = 0) -> tuple[memoryview, dict]:
        return self._raw(self._frame(camera, *self._resolutions[camera]))

    @RPCServer.register_method_buffer
    def low_res_still(self, camera: int = 0) -> tuple[memoryview, dict]:
        return self._raw(self._frame(camera, 640, 480))

    @staticmethod
    def _raw(image: np.ndarray) -> tuple[memoryview, dict]:
        return memoryview(image).cast("B"), {"shape": list(image.shape), "dtype": "uint8"}

    @RPCServer.register_method_json
    def get_max_resolution(self, camera: int = 0) -> list[int]:
        return list(self.MAX_RESOLUTION)

    @RPCServer.register_method_json
    def get_current_resolution(self, camera: int = 0) -> list[int]:
        return list(self._resolutions[camera])

    @RPCServer.register_method_json
    def set_resolution(self, x: int, y: int, camera: int = 0) -> list[int]:
        self._resolutions[camera] = [min(x, self.MAX_RESOLUTION[0]), min(y, self.MAX_RESOLUTION[1])]
        return list(self._resolutions[camera])

    @RPCServer.register_method_json
    def cameras(self) -> list[dict]:
        return [{"name": f"cam{i}", "index": i} for i in range(self._count)]

    @RPCServer.register_method_buffer
    def retrieve_still(self, data_code: str, camera: int = 0) -> tuple[memoryview, dict]:
        try:
            data, meta = self._stored(data_code)[camera]
        except KeyError:
            raise ImageUnavailable(f"camera {camera} holds nothing under {data_code!r}") from None
        return memoryview(data), {**meta, "format": "jpeg"}

    @RPCServer.register_method_json
    def release(self, data_code: str, cameras: list[int] | None = None) -> int:
        with self._lock:
            files = self._stored(data_code)
            wanted = set(files) if cameras is None else set(cameras)
            if not wanted <= set(files):
                raise ImageUnavailable(f"camera(s) {sorted(wanted)} hold nothing under {data_code!r}")
            for camera in wanted:
                del files[camera]
            if not files:
                del self._store[data_code]
            return len(wanted)

    @RPCServer.register_method_json
    def pending(self) -> dict[str, list[int]]:
        return {code: sorted(files) for code, files in self._store.items()}

    @RPCServer.register_method_json
    def configure(self, settings: dict, camera: int | None = None) -> list[dict]:
        return []

    @RPCServer.register_method_json
    def status(self) -> dict[str, Any]:
        return {"id": self.identify(), "pending": self.pending()}


class ReferenceNode(OldReferenceNode):
    """A minimal correct camera node: it serves ``release_many`` (the interface's default) over RPC."""

    @RPCServer.register_method_json
    def release_many(self, captures: dict[str, list[int] | None]) -> dict[str, Any]:
        return super().release_many(captures)


# -- broken nodes --------------------------------------------------------------------------------
class PoppingNode(ReferenceNode):
    """PEPI's behaviour: retrieving the stills deletes them."""

    def retrieve_stills_jpg(self, data_code: str) -> tuple[memoryview, dict]:
        result = super().retrieve_stills_jpg(data_code)
        self._store.pop(data_code, None)
        return result

    def retrieve_stills_png(self, data_code: str) -> tuple[memoryview, dict]:
        result = super().retrieve_stills_png(data_code)
        self._store.pop(data_code, None)
        return result


class ReversedNode(ReferenceNode):
    """Returns the stills in reverse camera order (sizes consistent with the bytes)."""

    def _bundle(self, files: list[bytes], fmt: str) -> tuple[memoryview, dict]:
        return super()._bundle(files[::-1], fmt)


class SmallPreviewNode(ReferenceNode):
    """Its low-resolution still is 320x240."""

    def low_res_still(self, camera: int = 0) -> tuple[memoryview, dict]:
        return self._raw(self._frame(camera, 320, 240))


class PngAsJpegNode(ReferenceNode):
    """``retrieve_stills_jpg`` sends PNG files (labelled as JPEG)."""

    def retrieve_stills_jpg(self, data_code: str) -> tuple[memoryview, dict]:
        data, info = self.retrieve_stills_png(data_code)
        return data, {**info, "format": "jpeg"}


class UnclampedNode(ReferenceNode):
    """Accepts any resolution, even beyond the maximum."""

    def set_resolution(self, x: int, y: int, camera: int = 0) -> list[int]:
        self._resolutions[camera] = [x, y]
        return [x, y]


class AppendingNode(ReferenceNode):
    """Capturing again under a code adds stills instead of replacing them."""

    def _put(self, data_code: str, files: list[tuple[bytes, dict]]) -> None:
        with self._lock:
            stored = self._store.setdefault(data_code, {})
            base = len(stored)
            stored.update((base + i, f) for i, f in enumerate(files))


class EagerNode(ReferenceNode):
    """Ignores the requested capture instant and fires at once."""

    def start_capture(self, data_code: str, at: float | None = None) -> dict:
        record = super().start_capture(data_code)
        return {**record, "requested_at": at}


class LaxCodesNode(ReferenceNode):
    """Stores under any data code, path separators included."""

    def _check_code(self, data_code: Any) -> None:
        return None


class KeyErrorNode(ReferenceNode):
    """Raises a bare ``KeyError`` for unknown data codes instead of ``ImageUnavailable``."""

    def _stored(self, data_code: str) -> dict[int, tuple[bytes, dict]]:
        return self._store[data_code]


class NoShutdownNode(ReferenceNode):
    """Accepts ``shutdown()`` but keeps serving."""

    def shutdown(self) -> None:
        return None


class GreedyReleaseNode(ReferenceNode):
    """``release_many`` deletes whole data codes, whatever cameras it was given."""

    @RPCServer.register_method_json
    def release_many(self, captures: dict[str, list[int] | None]) -> dict[str, Any]:
        return super().release_many(dict.fromkeys(captures))


# -- running a contract against a node in its own pytest session ---------------------------------
_SESSION_TEMPLATE = """
import importlib.util
import sys

import pytest

from plantimager.testing import {contract}


def _nodes():
    name = "kit_broken_nodes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, {path!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class TestSubject({contract}):
    shutdown_timeout = 1.0

    @pytest.fixture
    def {fixture}(self, plantimager_context):
        subject = _nodes().{node}(plantimager_context)
        yield subject
        subject.stop_server()
"""

_FIXTURES = {
    "CameraContract": "camera",
    "NodeContract": "node",
    "CameraOverRPC": "local_camera",
    "NodeOverRPC": "local_node",
}


def _contract_tests(contract: str) -> set[str]:
    base = CameraContract if "Camera" in contract else NodeContract
    return {name for name in dir(base) if name.startswith("test_")}


def _run(pytester: pytest.Pytester, node: str, contract: str) -> tuple[pytest.RunResult, set[str]]:
    source = _SESSION_TEMPLATE.format(
        contract=contract, fixture=_FIXTURES[contract], node=node, path=str(Path(__file__).resolve())
    )
    pytester.makepyfile(**{"test_subject": textwrap.dedent(source)})
    result = pytester.runpytest("-p", "no:cacheprovider", "-rf")
    failed = set(re.findall(r"^FAILED \S+::TestSubject::(test_\w+)", result.stdout.str(), re.MULTILINE))
    return result, failed


# A bare KeyError is neither ImageUnavailable (unknown code) nor a clear refusal (bad code).
_KEY_ERROR_FAILURES = {
    "test_unknown_data_code",
    "test_retrieve_is_not_one_shot",
    "test_bad_data_codes_refused",
    "test_release_many",
}
_BROKEN = [
    ("PoppingNode", "NodeContract", {"test_retrieve_is_not_one_shot"}),
    ("PoppingNode", "NodeOverRPC", {"test_retrieve_is_not_one_shot"}),
    ("ReversedNode", "NodeContract", {"test_capture_to_jpegs", "test_capture_to_pngs"}),
    ("ReversedNode", "NodeOverRPC", {"test_capture_to_jpegs", "test_capture_to_pngs"}),
    ("SmallPreviewNode", "CameraContract", {"test_low_res_still", "test_low_res_still_ignores_resolution"}),
    ("SmallPreviewNode", "CameraOverRPC", {"test_low_res_still", "test_low_res_still_ignores_resolution"}),
    ("PngAsJpegNode", "NodeContract", {"test_capture_to_jpegs"}),
    ("UnclampedNode", "CameraContract", {"test_set_resolution_beyond_max_is_clamped"}),
    ("AppendingNode", "NodeContract", {"test_capture_again_overwrites"}),
    ("EagerNode", "NodeContract", {"test_scheduled_capture"}),
    ("LaxCodesNode", "NodeContract", {"test_bad_data_codes_refused"}),
    ("KeyErrorNode", "NodeContract", _KEY_ERROR_FAILURES),
    ("KeyErrorNode", "NodeOverRPC", _KEY_ERROR_FAILURES),
    ("GreedyReleaseNode", "NodeContract", {"test_release_many"}),
    ("GreedyReleaseNode", "NodeOverRPC", {"test_release_many"}),
    ("OldReferenceNode", "NodeContract", set()),
    ("OldReferenceNode", "NodeOverRPC", {"test_release_many"}),
    ("NoShutdownNode", "NodeContract", set()),
    ("NoShutdownNode", "NodeOverRPC", {"test_shutdown_is_accepted"}),
]


@pytest.mark.parametrize(("node", "contract", "failing"), _BROKEN, ids=[f"{n}-{c}" for n, c, _ in _BROKEN])
def test_broken_node_fails_the_right_tests(
    pytester: pytest.Pytester, node: str, contract: str, failing: set[str]
) -> None:
    """Exactly the tests that check the broken promise fail; the others pass."""
    result, failed = _run(pytester, node, contract)
    total = len(_contract_tests(contract))
    assert failed == failing, result.stdout.str()
    result.assert_outcomes(passed=total - len(failing), failed=len(failing))


@pytest.mark.parametrize("contract", sorted(_FIXTURES))
def test_reference_node_passes_every_contract(pytester: pytest.Pytester, contract: str) -> None:
    """A correct implementation that is not ours passes all four contracts."""
    result, failed = _run(pytester, "ReferenceNode", contract)
    assert not failed, result.stdout.str()
    result.assert_outcomes(passed=len(_contract_tests(contract)))


def test_missing_fixture_is_reported(pytester: pytest.Pytester) -> None:
    """A subclass that forgets its fixture gets an error naming the fixture, not a silent pass."""
    pytester.makepyfile(
        test_subject="""
        from plantimager.testing import NodeContract

        class TestForgetful(NodeContract):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=len(_contract_tests("NodeContract")))
    result.stdout.fnmatch_lines(["*TestForgetful must define a `node` fixture*"])


def test_contract_classes_are_not_collected(pytester: pytest.Pytester) -> None:
    """Importing a contract into a test module does not run it without a subclass."""
    pytester.makepyfile(
        test_subject="""
        from plantimager.testing import CameraContract, CameraOverRPC, NodeContract, NodeOverRPC

        def test_nothing_else():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_markers_select_contract_tests(pytester: pytest.Pytester) -> None:
    """The plugin registers the markers; ``-m plantimager_over_rpc`` selects the over-RPC tests only."""
    source = _SESSION_TEMPLATE.format(
        contract="CameraOverRPC", fixture="local_camera", node="ReferenceNode", path=str(Path(__file__))
    )
    pytester.makepyfile(test_subject=textwrap.dedent(source), test_other="def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", "-m", "plantimager_over_rpc")
    result.assert_outcomes(passed=len(_contract_tests("CameraOverRPC")), deselected=1)


# -- the helpers catch broken usage too ----------------------------------------------------------
def test_checked_context_reports_a_leaked_socket() -> None:
    """A socket left open makes the checked context fail (fast here), naming the socket."""
    with (
        pytest.raises(AssertionError, match=r"1 socket\(s\) left open \(REQ"),
        checked_context(term_timeout=0.2) as context,
    ):
        leaked = context.socket(zmq.REQ)
        leaked.setsockopt(zmq.LINGER, 0)
    leaked.close()  # lets the waiting term() finish


def test_serve_in_thread_reports_a_server_that_cannot_serve(plantimager_context: zmq.Context) -> None:
    """A server that was already stopped cannot serve: the helper says so instead of hanging."""
    server = ReferenceNode(plantimager_context)
    server.stop_server()
    with (
        pytest.raises(RuntimeError, match="did not start serving"),
        serve_in_thread(server, start_timeout_ms=500),
    ):
        pass


def test_serve_fixture_stops_what_it_served(plantimager_serve: Any, plantimager_context: zmq.Context) -> None:
    """``plantimager_serve`` hands out a working proxy; its server is stopped after the test."""
    client = plantimager_serve(ReferenceNode(plantimager_context))
    assert client.ping() is True
    assert client.cameras()[1]["name"] == "cam1"


def test_client_class_is_cached_and_complete() -> None:
    """One proxy class per set of interfaces; the node proxy has every member of both interfaces."""
    assert client_class(CameraNode) is client_class(CameraNode)
    assert client_class(CameraNode, Camera) is NodeClient
    assert not getattr(NodeClient, "__abstractmethods__", None)
