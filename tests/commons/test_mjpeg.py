"""Tests for the MJPEG live preview server, over real loopback connections."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import simplejpeg

from plantimager.commons.mjpeg import MJPEGServer

TIMEOUT = 10.0


def jpeg(i: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """A small JPEG whose content depends on ``i``: a bar moving across a gradient."""
    w, h = size
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    x = (i * 13) % (w - 8)
    image[:, x : x + 8] = (255, 0, 0)
    return simplejpeg.encode_jpeg(image, quality=90)


class Gate:
    """A ``grab`` that returns the next frame only when the test releases it."""

    def __init__(self, frames: Callable[[int], bytes] = jpeg) -> None:
        self.frames = frames
        self.permits = threading.Semaphore(0)
        self.done = threading.Event()
        self.calls = 0

    def release(self, n: int = 1) -> None:
        self.permits.release(n)

    def __call__(self) -> bytes:
        while not self.done.is_set():
            if self.permits.acquire(timeout=0.05):
                frame = self.frames(self.calls)
                self.calls += 1
                return frame
        raise RuntimeError("test finished")


class Counter:
    """A free-running ``grab`` that counts its calls."""

    def __init__(self, size: tuple[int, int] = (160, 120)) -> None:
        self.size = size
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return jpeg(self.calls, self.size)


@pytest.fixture
def make_server() -> Iterator[Callable[..., MJPEGServer]]:
    servers: list[MJPEGServer] = []

    def make(**kwargs: object) -> MJPEGServer:
        server = MJPEGServer("127.0.0.1", 0, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_gate(make_server: Callable[..., MJPEGServer]) -> Iterator[Callable[..., Gate]]:
    """Gates are opened for good before the servers stop (this fixture is torn down first)."""
    gates: list[Gate] = []

    def make(**kwargs: object) -> Gate:
        gate = Gate(**kwargs)
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.done.set()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        threading.Event().wait(0.01)


def get(server: MJPEGServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Stream:
    """A viewer of one MJPEG stream that parses the multipart body by boundary and Content-Length."""

    def __init__(self, server: MJPEGServer, name: str, rcvbuf: int | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        if rcvbuf is not None:
            self.conn.connect()
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.conn.request("GET", f"/stream/{name}.mjpg")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        ctype, _, param = self.resp.getheader("Content-Type").partition(";")
        assert ctype == "multipart/x-mixed-replace"
        key, _, boundary = param.strip().partition("=")
        assert key == "boundary" and boundary
        self.boundary = boundary.encode("ascii")

    def frame(self) -> bytes:
        assert self.resp.readline() == b"--" + self.boundary + b"\r\n"
        headers = {}
        while (line := self.resp.readline()) != b"\r\n":
            assert line, "stream ended inside a part header"
            key, _, value = line.decode("ascii").partition(":")
            headers[key.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = self.resp.read(int(headers["content-length"]))
        assert self.resp.read(2) == b"\r\n"
        return data

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        return self.resp.read()

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


def test_stream_delivers_decodable_frames_that_follow_the_source(make_server):
    server = make_server()
    server.add_source("cam0", Counter(size=(640, 480)), fps=50)
    server.start()
    viewer = Stream(server, "cam0")
    try:
        first, second = viewer.frame(), viewer.frame()
    finally:
        viewer.close()
    a, b = simplejpeg.decode_jpeg(first), simplejpeg.decode_jpeg(second)
    assert a.shape == b.shape == (480, 640, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 100  # the red bar moved


def test_nothing_is_grabbed_without_viewers_and_grabbing_stops_after_they_leave(make_server):
    counter = Counter()
    server = make_server()
    server.add_source("cam0", counter, fps=50)
    server.start()
    for _ in range(3):
        status, _, body = get(server, "/")
        assert status == 200 and json.loads(body)["sources"][0]["name"] == "cam0"
    assert server.frames_grabbed("cam0") == 0
    assert counter.calls == 0

    viewer = Stream(server, "cam0")
    viewer.frame()
    assert server.clients("cam0") == 1
    viewer.close()
    wait_until(lambda: server.clients("cam0") == 0)
    assert server.wait_idle("cam0", TIMEOUT)
    grabbed = server.frames_grabbed("cam0")
    assert grabbed >= 1 and counter.calls == grabbed
    for _ in range(3):
        assert get(server, "/")[0] == 200
    assert server.frames_grabbed("cam0") == grabbed
    assert counter.calls == grabbed


def test_viewers_share_frames(make_server, make_gate):
    gate = make_gate()
    server = make_server()
    server.add_source("cam0", gate)
    server.start()
    a, b = Stream(server, "cam0"), Stream(server, "cam0")
    try:
        wait_until(lambda: server.clients("cam0") == 2)
        for i in range(3):
            gate.release()
            assert a.frame() == b.frame() == jpeg(i)
        assert server.frames_grabbed("cam0") == 3
    finally:
        a.close()
        b.close()


def test_slow_viewer_skips_frames_and_does_not_hold_back_others(make_server, make_gate):
    size, count = 256 * 1024, 80  # far more than the socket buffers of a viewer that does not read
    payloads = [b"\xff\xd8" + i.to_bytes(4, "big") + os.urandom(size) + b"\xff\xd9" for i in range(count)]
    gate = make_gate(frames=lambda i: payloads[i])
    server = make_server(client_timeout=60.0)
    server.add_source("cam0", gate, fps=1000)
    server.start()
    slow, fast = Stream(server, "cam0", rcvbuf=65536), Stream(server, "cam0")
    try:
        wait_until(lambda: server.clients("cam0") == 2)
        for i in range(count):
            gate.release()
            assert fast.frame() == payloads[i]
        seen = []
        while not seen or seen[-1] != payloads[-1]:
            seen.append(slow.frame())
        assert len(seen) < count
        assert all(frame in payloads for frame in seen)
    finally:
        slow.close()
        fast.close()


def test_snapshot_returns_one_fresh_jpeg(make_server):
    counter = Counter(size=(320, 240))
    server = make_server()
    server.add_source("cam0", counter)
    server.start()
    status, headers, body = get(server, "/snapshot/cam0.jpg")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert int(headers["content-length"]) == len(body)
    assert simplejpeg.decode_jpeg(body).shape == (240, 320, 3)
    assert server.wait_idle("cam0", TIMEOUT)
    assert server.frames_grabbed("cam0") >= 1


def test_snapshot_of_a_failing_source_is_503(make_server):
    def broken() -> bytes:
        raise OSError("camera unplugged")

    server = make_server(snapshot_timeout=0.3)
    server.add_source("cam0", broken)
    server.start()
    status, _, body = get(server, "/snapshot/cam0.jpg")
    assert status == 503
    assert b"cam0" in body


def test_stream_survives_failing_grabs(make_server):
    calls = {"n": 0}

    def flaky() -> bytes:
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("transient sensor error")
        return jpeg(calls["n"])

    server = make_server()
    server.add_source("cam0", flaky, fps=100)
    server.start()
    viewer = Stream(server, "cam0")
    try:
        frames = [viewer.frame() for _ in range(3)]
    finally:
        viewer.close()
    assert len(set(frames)) == 3
    assert calls["n"] >= 6


@pytest.mark.parametrize(
    "path, message",
    [
        ("/stream/nope.mjpg", b"unknown source"),
        ("/snapshot/nope.jpg", b"unknown source"),
        ("/stream/../x.mjpg", b"invalid source name"),
        ("/stream/%2e%2e.mjpg", b"invalid source name"),
        ("/stream/.mjpg", b"invalid source name"),
        ("/snapshot/.jpg", b"invalid source name"),
        ("/stream/" + "a" * 65 + ".mjpg", b"invalid source name"),
        ("/elsewhere", b"no such path"),
    ],
)
def test_unknown_or_bad_names_are_404(make_server, path, message):
    counter = Counter()
    server = make_server()
    server.add_source("cam0", counter)
    server.start()
    status, headers, body = get(server, path)
    assert status == 404
    assert headers["content-type"].startswith("text/plain")
    assert message in body
    assert counter.calls == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_other_methods_are_405(make_server, method):
    server = make_server()
    server.add_source("cam0", Counter())
    server.start()
    status, headers, _ = get(server, "/stream/cam0.mjpg", method=method)
    assert status == 405
    assert headers["allow"] == "GET"


def test_stop_with_a_viewer_connected_ends_the_response(make_server):
    server = make_server()
    server.add_source("cam0", Counter(), fps=50)
    server.start()
    viewer = Stream(server, "cam0")
    try:
        viewer.frame()
        server.stop()
        tail = viewer.rest()  # returns at end of file; a hang would raise a timeout
    finally:
        viewer.close()
    assert tail.endswith(b"--" + viewer.boundary + b"--\r\n")
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mjpeg-")]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).close()


def test_stop_ends_connections_that_never_sent_a_request(make_server):
    server = make_server()
    server.add_source("cam0", Counter())
    server.start()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        assert get(server, "/")[0] == 200  # accepted after the idle connection, so that one is open too
        server.stop()
        assert idle.recv(1) == b""
    finally:
        idle.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mjpeg-")]


def test_index_lists_sources_and_urls(make_server):
    server = make_server(advertise_host="camera-3.local")
    server.add_source("cam0", Counter())
    server.start()
    server.add_source("cam.1", Counter())
    status, headers, body = get(server, "/")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [s["name"] for s in json.loads(body)["sources"]] == ["cam0", "cam.1"]
    assert server.url_for("cam.1") == f"http://camera-3.local:{server.port}/stream/cam.1.mjpg"
    assert server.snapshot_url_for("cam0") == f"http://camera-3.local:{server.port}/snapshot/cam0.jpg"
    assert get(server, "/snapshot/cam.1.jpg")[0] == 200  # added after start: has a producer too


def test_url_uses_bind_host_by_default(make_server):
    server = make_server()
    server.add_source("cam0", Counter())
    server.start()
    assert server.url_for("cam0") == f"http://127.0.0.1:{server.port}/stream/cam0.mjpg"
    with pytest.raises(KeyError, match="nope"):
        server.url_for("nope")


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a b", "x" * 65, "é"])
def test_add_source_rejects_bad_names(make_server, name):
    with pytest.raises(ValueError, match="invalid source name"):
        make_server().add_source(name, Counter())


def test_add_source_rejects_duplicates_and_bad_arguments(make_server):
    server = make_server()
    server.add_source("cam0", Counter())
    with pytest.raises(ValueError, match="already exists"):
        server.add_source("cam0", Counter())
    with pytest.raises(TypeError, match="callable"):
        server.add_source("cam1", b"not callable")
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fps"):
            server.add_source("cam1", Counter(), fps=fps)


def test_port_before_start_and_second_start(make_server):
    server = make_server()
    with pytest.raises(RuntimeError):
        _ = server.port
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()  # idempotent
