"""Tests of the device registry: upstream wire behaviour, robustness, helpers, events, CLI."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.process import LAUNCH, Child
from plantimager.commons.errors import RegistryError
from plantimager.commons.registry import (
    ALIVE_TIMEOUT,
    DEFAULT_REGISTRY_PORT,
    AliveStatus,
    DeviceRegistry,
    EventType,
    register_device,
    send_alive_check,
    unregister_device,
)

WAIT = 5.0  # generous bound on anything that should happen "at once"; never slept


# ---------------------------------------------------------------------- fixtures and helpers


def _term(context: zmq.Context) -> None:
    """Terminate ``context``, failing (rather than hanging) if a socket was left open."""
    thread = threading.Thread(target=context.term, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "context.term() hangs: a socket was left open"


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    _term(ctx)


@pytest.fixture
def registry(context: zmq.Context) -> Iterator[DeviceRegistry]:
    reg = DeviceRegistry(context, "127.0.0.1", 0, heartbeat_interval=0.05)
    reg.start()
    yield reg
    reg.stop()
    reg.join(WAIT)
    assert not reg.is_alive()


@pytest.fixture
def req(context: zmq.Context, registry: DeviceRegistry) -> Iterator[zmq.Socket]:
    """A raw REQ socket, as an upstream device would use."""
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(WAIT * 1000))
    sock.connect(registry.url)
    yield sock
    sock.close()


def upstream_bytes(event: str, **payload: Any) -> bytes:
    """A message encoded the way upstream encodes it (Python's json with default separators)."""
    return json.dumps({"event": event, "payload": payload}).encode()


def roundtrip(sock: zmq.Socket, *frames: bytes) -> dict[str, Any]:
    sock.send_multipart(list(frames))
    reply = sock.recv_multipart()
    assert len(reply) == 1
    message = json.loads(reply[0])
    assert isinstance(message, dict)
    return message


def raw_register(sock: zmq.Socket, name: str, addr: str, **extra: Any) -> dict[str, Any]:
    reply = roundtrip(sock, upstream_bytes("REGISTER", device_type="camera", addr=addr, name=name, **extra))
    assert reply["event"] == "REGISTER_ACK"
    return reply["payload"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def next_event(sub: zmq.Socket, wanted: set[str]) -> dict[str, Any]:
    """Receive events until one of ``wanted`` arrives (bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        if sub.poll(int(left * 1000) + 1):
            message = json.loads(sub.recv())
            if message["event"] in wanted:
                return message
    raise AssertionError(f"no {wanted} event within {WAIT} s")


class FakeRegistry:
    """A REP socket answering each request with the next canned reply, recording what it received."""

    def __init__(self, context: zmq.Context, replies: list[list[bytes]]) -> None:
        self.sock = context.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.replies = list(replies)
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and self.replies:
            if self.sock.poll(50):
                self.received.append(json.loads(self.sock.recv()))
                self.sock.send_multipart(self.replies.pop(0))
        self._stop.wait()
        self.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def fake_registry(context: zmq.Context) -> Iterator[Callable[[list[list[bytes]]], FakeRegistry]]:
    made: list[FakeRegistry] = []

    def make(replies: list[list[bytes]]) -> FakeRegistry:
        made.append(FakeRegistry(context, replies))
        return made[-1]

    yield make
    for fake in made:
        fake.stop()


# ---------------------------------------------------------------------- upstream wire behaviour


def test_constants() -> None:
    assert DEFAULT_REGISTRY_PORT == 5555
    assert ALIVE_TIMEOUT == 20
    assert {e.value for e in EventType} >= {
        "REGISTER",
        "REGISTER_ACK",
        "UNREGISTER",
        "CHECK_ALIVE",
        "ACK",
        "UNSUPPORTED",
    }
    assert [s.value for s in AliveStatus] == ["ok", "unknown", "unreachable"]


def test_registry_binds_in_constructor(context: zmq.Context) -> None:
    reg = DeviceRegistry(context, "127.0.0.1", 0)
    try:
        assert isinstance(reg.port, int) and reg.port > 0
        assert reg.url == f"tcp://127.0.0.1:{reg.port}"
        assert reg.events_port > 0 and reg.events_port != reg.port
        assert reg.daemon
    finally:
        reg.stop()  # never started: stop() closes the sockets itself
    reg.stop()  # a second stop is harmless


def test_bind_conflict_raises_registry_error(context: zmq.Context, registry: DeviceRegistry) -> None:
    with pytest.raises(RegistryError, match=str(registry.port)):
        DeviceRegistry(context, "127.0.0.1", registry.port)


def test_lifecycle_upstream_bytes(req: zmq.Socket, registry: DeviceRegistry) -> None:
    # Upstream's advertised addresses may be malformed (tcp://h:p:p); they are kept as opaque strings.
    addr = "tcp://127.0.0.1:9001:9001"
    reply = roundtrip(req, upstream_bytes("REGISTER", device_type="camera", addr=addr, name="cam"))
    assert reply["event"] == "REGISTER_ACK"
    assert reply["payload"]["name"] == "cam"
    device_uuid = reply["payload"]["uuid"]
    assert len(device_uuid) == 36 and uuid.UUID(device_uuid).version == 1
    assert registry.get_devices() == {"cam": ("camera", addr)}

    reply = roundtrip(req, upstream_bytes("UNREGISTER", uuid=device_uuid))
    assert reply == {"event": "ACK", "payload": {"req_event": "UNREGISTER", "success": True}}
    assert registry.get_devices() == {}

    reply = roundtrip(req, upstream_bytes("UNREGISTER", uuid=device_uuid))
    assert reply == {"event": "ACK", "payload": {"req_event": "UNREGISTER", "success": False}}


def test_get_devices_returns_a_snapshot(req: zmq.Socket, registry: DeviceRegistry) -> None:
    raw_register(req, "cam", "tcp://10.0.0.1:1")
    snapshot = registry.get_devices()
    snapshot.clear()
    raw_register(req, "cam2", "tcp://10.0.0.2:1")
    assert snapshot == {}
    assert set(registry.get_devices()) == {"cam", "cam2"}


def test_naming_sequence_and_conflicts(req: zmq.Socket, registry: DeviceRegistry) -> None:
    assert raw_register(req, "cam", "tcp://h1:1")["name"] == "cam"
    assert raw_register(req, "cam", "tcp://h2:1")["name"] == "cam-1"
    third = raw_register(req, "cam", "tcp://h3:1", overwrite=False)
    assert third["name"] == "cam-2"
    # Re-registering from a known address replaces that entry and voids its uuid, even without overwrite.
    assert raw_register(req, "other", "tcp://h3:1")["name"] == "other"
    assert "cam-2" not in registry.get_devices()
    stale = roundtrip(req, upstream_bytes("CHECK_ALIVE", uuid=third["uuid"]))
    assert stale["payload"] == {"req_event": "CHECK_ALIVE", "success": False}
    # Overwrite takes the name over from another address.
    assert raw_register(req, "cam", "tcp://h4:1", overwrite=True)["name"] == "cam"
    assert registry.get_devices() == {
        "cam": ("camera", "tcp://h4:1"),
        "cam-1": ("camera", "tcp://h2:1"),
        "other": ("camera", "tcp://h3:1"),
    }


def test_empty_name_uses_device_type_as_base(req: zmq.Socket) -> None:
    names = [raw_register(req, "", f"tcp://h{i}:1")["name"] for i in range(3)]
    assert names == ["camera", "camera-1", "camera-2"]


def test_check_alive(context: zmq.Context, req: zmq.Socket, registry: DeviceRegistry) -> None:
    device_uuid = raw_register(req, "cam", "tcp://h:1")["uuid"]
    reply = roundtrip(req, upstream_bytes("CHECK_ALIVE", uuid=device_uuid))  # no alive_timeout: default
    assert reply == {"event": "ACK", "payload": {"req_event": "CHECK_ALIVE", "success": True}}
    assert send_alive_check(context, device_uuid, registry.url, 60) is AliveStatus.OK
    assert send_alive_check(context, str(uuid.uuid1()), registry.url) is AliveStatus.UNKNOWN


def test_expiry_honours_alive_timeout_from_registration(
    context: zmq.Context, registry: DeviceRegistry
) -> None:
    removed: list[str] = []
    gone = threading.Event()

    def on_removed(device_type: str, addr: str, name: str) -> None:
        removed.append(name)
        gone.set()

    registry.add_device_removed_callback(on_removed)
    register_device(context, "camera", "tcp://h:2", "lasting", registry.url)
    start = time.monotonic()
    register_device(context, "camera", "tcp://h:1", "brief", registry.url, alive_timeout=0.2)
    assert gone.wait(WAIT), "a device with alive_timeout=0.2 s was not pruned (upstream waits 20 s)"
    assert time.monotonic() - start >= 0.2
    assert removed == ["brief"]
    assert set(registry.get_devices()) == {"lasting"}


def test_check_alive_sets_the_expiry(context: zmq.Context, registry: DeviceRegistry) -> None:
    gone = threading.Event()
    registry.add_device_removed_callback(lambda *_: gone.set())
    _, device_uuid = register_device(context, "camera", "tcp://h:1", "cam", registry.url, alive_timeout=60)
    start = time.monotonic()
    assert send_alive_check(context, device_uuid, registry.url, 0.2) is AliveStatus.OK
    assert gone.wait(WAIT)
    assert time.monotonic() - start >= 0.2
    assert send_alive_check(context, device_uuid, registry.url) is AliveStatus.UNKNOWN


# ---------------------------------------------------------------------- robustness


def _obj(**kw: Any) -> bytes:
    return json.dumps(kw).encode()


_REG = {"device_type": "camera", "addr": "tcp://h:1", "name": "cam"}


def _register(**changes: Any) -> list[bytes]:
    """A REGISTER request with fields changed; a field given as None is left out."""
    payload = {k: v for k, v in {**_REG, **changes}.items() if v is not None}
    return [_obj(event="REGISTER", payload=payload)]


MALFORMED: list[tuple[str, list[bytes], str, str | None]] = [
    # id, frames, expected event, text the error must contain
    ("not-json", [b"not json"], "ERROR", "JSON"),
    ("not-utf8", [b"\xff\xfe\x00"], "ERROR", "JSON"),
    ("empty-frame", [b""], "ERROR", "JSON"),
    ("array", [b"[1, 2]"], "ERROR", "object"),
    ("string", [b'"REGISTER"'], "ERROR", "object"),
    ("null", [b"null"], "ERROR", "object"),
    ("empty-object", [b"{}"], "ERROR", "event"),
    ("no-event", [_obj(payload=_REG)], "ERROR", "event"),
    ("event-not-str", [_obj(event=5, payload={})], "ERROR", "event"),
    ("no-payload", [_obj(event="REGISTER")], "ERROR", "payload"),
    ("payload-null", [_obj(event="UNREGISTER", payload=None)], "ERROR", "payload"),
    ("payload-list", [_obj(event="REGISTER", payload=[])], "ERROR", "payload"),
    ("no-device-type", _register(device_type=None), "ERROR", "device_type"),
    ("addr-int", _register(addr=5), "ERROR", "addr"),
    ("no-name", _register(name=None), "ERROR", "name"),
    ("name-int", _register(name=7), "ERROR", "name"),
    ("addr-empty", _register(addr=""), "ERROR", "addr"),
    ("overwrite-str", _register(overwrite="yes"), "ERROR", "overwrite"),
    ("timeout-negative", _register(alive_timeout=-1), "ERROR", "alive_timeout"),
    ("timeout-bool", _register(alive_timeout=True), "ERROR", "alive_timeout"),
    ("timeout-inf", [b'{"event": "REGISTER", "payload": {"device_type": "c", "addr": "a", "name": "n", '
                     b'"alive_timeout": Infinity}}'], "ERROR", "alive_timeout"),
    ("unregister-no-uuid", [_obj(event="UNREGISTER", payload={})], "ERROR", "uuid"),
    ("alive-uuid-int", [_obj(event="CHECK_ALIVE", payload={"uuid": 3})], "ERROR", "uuid"),
    ("alive-timeout-zero", [_obj(event="CHECK_ALIVE", payload={"uuid": "x", "alive_timeout": 0})], "ERROR",
     "alive_timeout"),
    ("list-filter-int", [_obj(event="LIST", payload={"device_type": 3})], "ERROR", "device_type"),
    ("multipart", [_obj(event="LIST", payload={}), b"extra"], "ERROR", "frame"),
    ("unknown-event", [_obj(event="FOO", payload={})], "UNSUPPORTED", None),
    ("unknown-no-payload", [_obj(event="BAR")], "UNSUPPORTED", None),
    ("reply-event", [_obj(event="ACK", payload={"success": True})], "UNSUPPORTED", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frames", "event", "text"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_request_gets_a_reply(
    req: zmq.Socket, registry: DeviceRegistry, frames: list[bytes], event: str, text: str | None
) -> None:
    reply = roundtrip(req, *frames)
    assert reply["event"] == event
    if event == "ERROR":
        assert text is not None and text in reply["payload"]["error"]
        assert "req_event" in reply["payload"]
    else:
        assert reply["payload"]["req_event"] == json.loads(frames[0])["event"]
    assert registry.get_devices() == {}
    # The registry keeps serving.
    assert raw_register(req, "cam", "tcp://h:1")["name"] == "cam"


def test_error_names_the_request_event(req: zmq.Socket) -> None:
    reply = roundtrip(req, _obj(event="REGISTER", payload={**_REG, "addr": None}))
    assert reply["payload"]["req_event"] == "REGISTER"
    reply = roundtrip(req, b"{")
    assert reply["payload"]["req_event"] is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(["device_type", "addr", "name", "overwrite", "alive_timeout", "uuid"]) | st.text(
    max_size=6
)
_messages = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from([e.value for e in EventType]) | st.text(max_size=10) | _json,
        "payload": st.dictionaries(_keys, _json, max_size=5) | _json,
    },
)
_garbage = st.one_of(
    st.binary(max_size=48).map(lambda b: [b]),
    _json.map(lambda v: [json.dumps(v).encode()]),
    _messages.map(lambda m: [json.dumps(m).encode()]),
    st.lists(st.binary(max_size=16), min_size=2, max_size=4),
)


def test_garbage_never_stops_the_registry(req: zmq.Socket, registry: DeviceRegistry) -> None:
    replies: list[str] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(frames=_garbage)
    def send(frames: list[bytes]) -> None:
        reply = roundtrip(req, *frames)
        assert reply["event"] in {"ERROR", "UNSUPPORTED", "REGISTER_ACK", "ACK", "LIST_ACK"}
        if reply["event"] == "ERROR":
            assert isinstance(reply["payload"]["error"], str) and reply["payload"]["error"]
        replies.append(reply["event"])

    send()
    assert len(replies) >= 100 and "ERROR" in replies
    # Still serving, and still correct.
    name = raw_register(req, "after-garbage", "tcp://after:1")["name"]
    assert name == "after-garbage"
    assert registry.get_devices()["after-garbage"] == ("camera", "tcp://after:1")


# ---------------------------------------------------------------------- callbacks


def test_callbacks_run_off_the_socket_thread(context: zmq.Context, registry: DeviceRegistry) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[tuple[int, tuple[str, str, str]]] = []

    def blocking(device_type: str, addr: str, name: str) -> None:
        seen.append((threading.get_ident(), (device_type, addr, name)))
        entered.set()
        release.wait(WAIT)

    registry.add_new_device_callback(blocking)
    try:
        register_device(context, "camera", "tcp://a:1", "a", registry.url, timeout=2000)
        assert entered.wait(WAIT)
        # The callback is blocked; replies must not wait for it.
        assert register_device(context, "camera", "tcp://b:1", "b", registry.url, timeout=2000)[0] == "b"
    finally:
        release.set()
    assert seen[0] == (seen[0][0], ("camera", "tcp://a:1", "a"))
    assert seen[0][0] not in (registry.ident, threading.get_ident())


def test_raising_callback_is_logged_and_others_still_run(
    context: zmq.Context, registry: DeviceRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def broken(*_: str) -> None:
        raise RuntimeError("callback bug")

    registry.add_new_device_callback(broken)
    registry.add_new_device_callback(lambda *_: done.set())
    register_device(context, "camera", "tcp://a:1", "a", registry.url)
    assert done.wait(WAIT)
    assert "callback bug" in caplog.text
    assert register_device(context, "camera", "tcp://b:1", "b", registry.url)[0] == "b"


# ---------------------------------------------------------------------- device-side helpers


def test_helpers_against_registry(context: zmq.Context, registry: DeviceRegistry) -> None:
    name, device_uuid = register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    assert name == "cam" and uuid.UUID(device_uuid).version == 1
    assert register_device(context, "camera", "tcp://h:2", "cam", registry.url)[0] == "cam-1"
    assert register_device(context, "camera", "tcp://h:3", "cam", registry.url, overwrite=True)[0] == "cam"
    assert unregister_device(context, device_uuid, registry.url) is False  # replaced by the overwrite
    _, other = register_device(context, "camera", "tcp://h:4", "x", registry.url.removeprefix("tcp://"))
    assert unregister_device(context, other, registry.url) is True
    assert unregister_device(context, other, registry.url) is False  # ACK with success false


def test_register_device_sends_explicit_fields(
    context: zmq.Context, fake_registry: Callable[[list[list[bytes]]], FakeRegistry]
) -> None:
    ack = [_obj(event="REGISTER_ACK", payload={"name": "camera", "uuid": str(uuid.uuid1())})]
    fake = fake_registry([ack, ack])
    register_device(context, "camera", "tcp://h:1", "", fake.url)
    register_device(context, "camera", "tcp://h:1", "cam", fake.url, True, alive_timeout=7)
    first, second = (m["payload"] for m in fake.received)
    # Never an empty proposal; overwrite always present as a boolean; no alive_timeout unless asked.
    assert first == {"device_type": "camera", "addr": "tcp://h:1", "name": "camera", "overwrite": False}
    assert second == {
        "device_type": "camera",
        "addr": "tcp://h:1",
        "name": "cam",
        "overwrite": True,
        "alive_timeout": 7,
    }
    assert [m["event"] for m in fake.received] == ["REGISTER", "REGISTER"]


@pytest.mark.parametrize(
    "reply",
    [
        [b"garbage"],
        [b"[]"],
        [_obj(event="ACK", payload={"success": True})],
        [_obj(event="REGISTER_ACK", payload={"name": 3, "uuid": "u"})],
        [_obj(event="REGISTER_ACK", payload={"name": "", "uuid": ""})],
        [_obj(event="ERROR", payload={"req_event": "REGISTER", "error": "bad thing"})],
        [b"{}", b"{}"],
    ],
    ids=["not-json", "array", "wrong-event", "wrong-type", "empty", "error", "multipart"],
)
def test_register_device_rejects_bad_replies(
    context: zmq.Context, fake_registry: Callable[[list[list[bytes]]], FakeRegistry], reply: list[bytes]
) -> None:
    fake = fake_registry([reply])
    with pytest.raises(RegistryError, match=str(fake.port)):
        register_device(context, "camera", "tcp://h:1", "cam", fake.url, timeout=2000)


def test_unregister_and_alive_check_read_the_reply(
    context: zmq.Context, fake_registry: Callable[[list[list[bytes]]], FakeRegistry]
) -> None:
    fake = fake_registry(
        [
            [_obj(event="ACK", payload={"req_event": "UNREGISTER", "success": False})],
            [_obj(event="UNSUPPORTED", payload={"req_event": "UNREGISTER"})],
            [_obj(event="ACK", payload={"req_event": "CHECK_ALIVE", "success": True})],
            [_obj(event="UNSUPPORTED", payload={"req_event": "CHECK_ALIVE"})],
            [b"not json"],
        ]
    )
    assert unregister_device(context, "u", fake.url) is False
    assert unregister_device(context, "u", fake.url) is False
    assert send_alive_check(context, "u", fake.url, 60) is AliveStatus.OK
    assert send_alive_check(context, "u", fake.url) is AliveStatus.UNKNOWN
    assert send_alive_check(context, "u", fake.url) is AliveStatus.UNKNOWN
    assert fake.received[2] == {"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": 60}}


def test_unreachable_registry_is_bounded_and_term_does_not_hang(caplog: pytest.LogCaptureFixture) -> None:
    ctx = zmq.Context()
    url = f"tcp://127.0.0.1:{free_port()}"
    try:
        start = time.monotonic()
        with pytest.raises(RegistryError, match=url):
            register_device(ctx, "camera", "tcp://h:1", "cam", url, timeout=200)
        assert time.monotonic() - start < 2.0  # 200 ms asked; generous for a loaded machine
        assert unregister_device(ctx, "u", url, timeout=200) is False
        assert "UNREGISTER" in caplog.text
        assert send_alive_check(ctx, "u", url, timeout=200) is AliveStatus.UNREACHABLE
    finally:
        _term(ctx)  # the requests above are still queued: linger 0 must let the context go


# ---------------------------------------------------------------------- extension: LIST and events


def test_list(req: zmq.Socket, registry: DeviceRegistry) -> None:
    empty = roundtrip(req, _obj(event="LIST"))
    assert empty["event"] == "LIST_ACK"
    assert empty["payload"]["devices"] == []
    assert empty["payload"]["events_port"] == registry.events_port
    assert empty["payload"]["registry_id"] == registry.registry_id
    raw_register(req, "cam", "tcp://h:1")
    roundtrip(req, upstream_bytes("REGISTER", device_type="scanner", addr="tcp://s:1", name="scan"))
    full = roundtrip(req, upstream_bytes("LIST"))["payload"]
    assert full["seq"] == empty["payload"]["seq"] + 2
    assert full["devices"] == [
        {"name": "cam", "device_type": "camera", "addr": "tcp://h:1"},
        {"name": "scan", "device_type": "scanner", "addr": "tcp://s:1"},
    ]
    only = roundtrip(req, upstream_bytes("LIST", device_type="scanner"))["payload"]
    assert [d["name"] for d in only["devices"]] == ["scan"]


def test_events_are_published_with_sequence_numbers(
    context: zmq.Context, req: zmq.Socket, registry: DeviceRegistry
) -> None:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(registry.events_url)
    try:
        beat = next_event(sub, {"HEARTBEAT"})  # the subscription is live once a heartbeat arrives
        seq = beat["payload"]["seq"]
        assert beat["payload"]["registry_id"] == registry.registry_id

        ack = raw_register(req, "cam", "tcp://h:1")
        added = next_event(sub, {"DEVICE_ADDED", "DEVICE_REMOVED"})
        assert added["event"] == "DEVICE_ADDED"
        assert added["payload"] == {
            "name": "cam",
            "device_type": "camera",
            "addr": "tcp://h:1",
            "seq": seq + 1,
            "registry_id": registry.registry_id,
        }
        raw_register(req, "other", "tcp://h:1")  # same address: replaces cam
        replaced = next_event(sub, {"DEVICE_ADDED", "DEVICE_REMOVED"})
        readded = next_event(sub, {"DEVICE_ADDED", "DEVICE_REMOVED"})
        assert (replaced["event"], replaced["payload"]["name"], replaced["payload"]["seq"]) == (
            "DEVICE_REMOVED",
            "cam",
            seq + 2,
        )
        assert (readded["event"], readded["payload"]["name"], readded["payload"]["seq"]) == (
            "DEVICE_ADDED",
            "other",
            seq + 3,
        )
        assert roundtrip(req, upstream_bytes("UNREGISTER", uuid=ack["uuid"]))["payload"]["success"] is False
        beat = next_event(sub, {"HEARTBEAT", "DEVICE_ADDED", "DEVICE_REMOVED"})
        assert beat == {
            "event": "HEARTBEAT",
            "payload": {"seq": seq + 3, "registry_id": registry.registry_id},
        }
    finally:
        sub.close()


# ---------------------------------------------------------------------- lifecycle and CLI


def test_stop_is_prompt_and_idempotent(context: zmq.Context) -> None:
    reg = DeviceRegistry(context, "127.0.0.1", 0)
    reg.start()
    reg.stop()
    assert not reg.is_alive()
    reg.stop()
    # The port is free again.
    DeviceRegistry(context, "127.0.0.1", reg.port).stop()


def test_cli_registry_runs_until_sigint(context: zmq.Context) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    code = "from plantimager.cli.main import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "registry", "--bind", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        name, device_uuid = register_device(context, "camera", "tcp://h:1", "cam", url, timeout=15000)
        assert name == "cam"
        assert unregister_device(context, device_uuid, url, timeout=5000) is True
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, output
        assert f"registry listening on {url} (events on port " in output
        assert "device arrived: cam" in output
        assert "device left: cam" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


def test_cli_registry_prints_the_port_it_got_even_when_quiet() -> None:
    registry = Child([*LAUNCH, "-q", "registry", "--bind", "tcp://127.0.0.1:0"])
    try:
        port = registry.wait_for(r"^registry listening on tcp://127\.0\.0\.1:(\d+) \(events").group(1)
        assert int(port) > 0
    finally:
        registry.kill()


def test_cli_rejects_a_bad_bind() -> None:
    code = "from plantimager.cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "registry", "--bind", "udp://x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--bind" in result.stderr
