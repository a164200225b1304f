"""Tests of list_devices and RegistryWatcher: a controller following a registry from another process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from plantimager.commons.errors import RegistryError
from plantimager.commons.registry import (
    DeviceInfo,
    DeviceRegistry,
    RegistryWatcher,
    list_devices,
    register_device,
    unregister_device,
)

WAIT = 5.0  # generous bound on anything that should happen "at once"; never slept


def _term(context: zmq.Context) -> None:
    """Terminate ``context``, failing (rather than hanging) if a socket was left open."""
    thread = threading.Thread(target=context.term, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "context.term() hangs: a socket was left open"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    assert not reg.is_alive()


class Recorder:
    """Collects watcher callbacks, with the time each arrived."""

    def __init__(self, watcher: RegistryWatcher) -> None:
        self.events: list[tuple[str, DeviceInfo, float, str]] = []
        self.lock = threading.Condition()
        watcher.on_added(lambda d: self._record("added", d))
        watcher.on_removed(lambda d: self._record("removed", d))

    def _record(self, kind: str, device: DeviceInfo) -> None:
        with self.lock:
            self.events.append((kind, device, time.monotonic(), threading.current_thread().name))
            self.lock.notify_all()

    def kinds(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(kind, device.name) for kind, device, _, _ in self.events]

    def wait_for_count(self, count: int) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.events) >= count, WAIT)


@pytest.fixture
def watch(context: zmq.Context) -> Iterator[Any]:
    """Make started watchers that the test does not need to stop."""
    made: list[RegistryWatcher] = []

    def make(url: str, **kwargs: Any) -> tuple[RegistryWatcher, Recorder]:
        watcher = RegistryWatcher(context, url, list_timeout=300, **kwargs)
        recorder = Recorder(watcher)
        made.append(watcher.start())
        return watcher, recorder

    yield make
    for watcher in made:
        watcher.stop()
        assert not watcher._thread.is_alive()


def has(*names: str) -> Any:
    return lambda devices: set(devices) == set(names)


def test_list_devices(context: zmq.Context, registry: DeviceRegistry) -> None:
    assert list_devices(context, registry.url) == []
    register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    register_device(context, "scanner", "tcp://s:1", "scan", registry.url)
    assert list_devices(context, registry.url) == [
        DeviceInfo("cam", "camera", "tcp://h:1"),
        DeviceInfo("scan", "scanner", "tcp://s:1"),
    ]
    assert list_devices(context, registry.url, device_type="camera") == [
        DeviceInfo("cam", "camera", "tcp://h:1")
    ]


def test_list_devices_unreachable_or_unsupported(context: zmq.Context) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match="did not answer LIST"):
        list_devices(context, url, timeout=200)
    # An upstream registry answers UNSUPPORTED.
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    try:
        result: list[BaseException] = []

        def ask() -> None:
            try:
                list_devices(context, f"tcp://127.0.0.1:{port}", timeout=int(WAIT * 1000))
            except RegistryError as exc:
                result.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        assert rep.poll(int(WAIT * 1000))
        assert json.loads(rep.recv())["event"] == "LIST"
        rep.send(json.dumps({"event": "UNSUPPORTED", "payload": {"req_event": "LIST"}}).encode())
        asker.join(WAIT)
        assert "does not support LIST" in str(result[0])
    finally:
        rep.close()


def test_watcher_sees_arrivals_and_departures(
    context: zmq.Context, registry: DeviceRegistry, watch: Any, record_property: Any
) -> None:
    register_device(context, "camera", "tcp://h:0", "early", registry.url)
    watcher, recorder = watch(registry.url)
    assert watcher.wait_for(has("early"), WAIT)  # from the initial snapshot
    assert watcher.connected

    start = time.monotonic()
    _, device_uuid = register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    assert watcher.wait_for(has("early", "cam"), WAIT)
    added_latency = time.monotonic() - start
    assert watcher.devices()["cam"] == DeviceInfo("cam", "camera", "tcp://h:1")

    start = time.monotonic()
    assert unregister_device(context, device_uuid, registry.url)
    assert watcher.wait_for(has("early"), WAIT)
    removed_latency = time.monotonic() - start

    record_property("added_latency_ms", round(added_latency * 1000, 2))
    record_property("removed_latency_ms", round(removed_latency * 1000, 2))
    assert recorder.kinds() == [("added", "early"), ("added", "cam"), ("removed", "cam")]
    assert {thread for *_, thread in recorder.events} == {"RegistryWatcher"}


def test_watcher_snapshot_is_a_copy(context: zmq.Context, registry: DeviceRegistry, watch: Any) -> None:
    register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    watcher, _ = watch(registry.url)
    assert watcher.wait_for(has("cam"), WAIT)
    watcher.devices().clear()
    assert set(watcher.devices()) == {"cam"}


def test_watcher_reports_a_replacement(context: zmq.Context, registry: DeviceRegistry, watch: Any) -> None:
    register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    watcher, recorder = watch(registry.url)
    assert watcher.wait_for(has("cam"), WAIT)
    register_device(context, "camera", "tcp://h:2", "cam", registry.url, overwrite=True)
    assert watcher.wait_for(lambda d: d.get("cam") == DeviceInfo("cam", "camera", "tcp://h:2"), WAIT)
    assert recorder.kinds() == [("added", "cam"), ("removed", "cam"), ("added", "cam")]


def test_watcher_filters_by_device_type(context: zmq.Context, registry: DeviceRegistry, watch: Any) -> None:
    register_device(context, "scanner", "tcp://s:1", "scan", registry.url)
    watcher, recorder = watch(registry.url, device_type="camera")
    register_device(context, "scanner", "tcp://s:2", "scan2", registry.url)
    register_device(context, "camera", "tcp://h:1", "cam", registry.url)
    assert watcher.wait_for(has("cam"), WAIT)
    assert recorder.kinds() == [("added", "cam")]


def test_watcher_detects_expiry(context: zmq.Context, registry: DeviceRegistry, watch: Any) -> None:
    watcher, recorder = watch(registry.url)
    assert watcher.wait_for(lambda d: watcher.connected, WAIT)
    register_device(context, "camera", "tcp://h:1", "brief", registry.url, alive_timeout=0.2)
    assert recorder.wait_for_count(2)
    assert recorder.kinds() == [("added", "brief"), ("removed", "brief")]
    assert watcher.devices() == {}


def test_watcher_follows_a_registry_restart(context: zmq.Context, watch: Any) -> None:
    first = DeviceRegistry(context, "127.0.0.1", 0, heartbeat_interval=0.05)
    first.start()
    second = None
    try:
        register_device(context, "camera", "tcp://h:1", "old", first.url)
        watcher, recorder = watch(first.url, rejoin_grace=0.5)
        assert watcher.wait_for(has("old"), WAIT)

        first.stop()
        # A new, empty registry on the same port (its events port is another one).
        second = DeviceRegistry(context, "127.0.0.1", first.port, heartbeat_interval=0.05)
        second.start()
        restarted = time.monotonic()
        register_device(context, "camera", "tcp://h:2", "new", second.url)
        # "old" may register again on its next heartbeat: it is kept that long, then reported gone.
        assert watcher.wait_for(has("new", "old"), WAIT)
        assert watcher.wait_for(has("new"), WAIT)
        assert watcher.connected
        assert recorder.kinds() == [("added", "old"), ("added", "new"), ("removed", "old")]
        removed_at = recorder.events[-1][2]
        assert removed_at - restarted >= 0.5
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_device_that_registers_again_after_a_registry_restart_never_looks_gone(
    context: zmq.Context, watch: Any
) -> None:
    first = DeviceRegistry(context, "127.0.0.1", 0, heartbeat_interval=0.05)
    first.start()
    second = None
    try:
        register_device(context, "camera", "tcp://h:1", "cam", first.url)
        watcher, recorder = watch(first.url)
        assert watcher.wait_for(has("cam"), WAIT)
        first.stop()
        second = DeviceRegistry(context, "127.0.0.1", first.port, heartbeat_interval=0.05)
        second.start()
        # The watcher lists the new registry (it sees the probe) before the camera registers again.
        register_device(context, "camera", "tcp://h:9", "probe", second.url)
        assert recorder.wait_for_count(2)
        assert watcher.devices().keys() == {"cam", "probe"}
        register_device(context, "camera", "tcp://h:1", "cam", second.url)
        register_device(context, "camera", "tcp://h:8", "probe2", second.url)  # seen after "cam" came back
        assert recorder.wait_for_count(3)
        assert recorder.kinds() == [("added", "cam"), ("added", "probe"), ("added", "probe2")]
        assert watcher.devices()["cam"] == DeviceInfo("cam", "camera", "tcp://h:1")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_watcher_started_before_the_registry(context: zmq.Context, watch: Any) -> None:
    port = free_port()
    watcher, _ = watch(f"tcp://127.0.0.1:{port}")
    assert not watcher.connected
    reg = DeviceRegistry(context, "127.0.0.1", port, heartbeat_interval=0.05)
    reg.start()
    try:
        register_device(context, "camera", "tcp://h:1", "cam", reg.url)
        assert watcher.wait_for(has("cam"), WAIT)
    finally:
        reg.stop()


class FakeEventsRegistry:
    """A registry stand-in whose LIST answers and published events the test controls."""

    def __init__(self, context: zmq.Context) -> None:
        self.rep = context.socket(zmq.REP)
        self.rep.setsockopt(zmq.LINGER, 0)
        self.port = self.rep.bind_to_random_port("tcp://127.0.0.1")
        self.pub = context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.events_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.state: dict[str, Any] = {"devices": [], "seq": 0}
        self.lists = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self.rep.poll(50):
                self.rep.recv()
                with self.cond:
                    payload = {
                        **self.state,
                        "events_port": self.events_port,
                        "registry_id": "fake",
                        "heartbeat_interval": 60.0,  # silence never triggers a LIST in this test
                    }
                    self.lists += 1
                    self.cond.notify_all()
                self.rep.send(json.dumps({"event": "LIST_ACK", "payload": payload}).encode())
        self.rep.close()

    def publish(self, event: str, **payload: Any) -> None:
        self.pub.send(json.dumps({"event": event, "payload": {**payload, "registry_id": "fake"}}).encode())

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(WAIT)
        self.pub.close()


def test_watcher_lists_again_after_a_sequence_gap(context: zmq.Context, watch: Any) -> None:
    fake = FakeEventsRegistry(context)
    try:
        watcher, recorder = watch(fake.url)
        with fake.cond:
            assert fake.cond.wait_for(lambda: fake.lists >= 2, WAIT)  # subscribed, then listed
            # Changes 1 and 2 happened; the watcher only ever sees the event of change 2.
            fake.state = {
                "devices": [
                    {"name": "missed", "device_type": "camera", "addr": "tcp://m:1"},
                    {"name": "seen", "device_type": "camera", "addr": "tcp://s:1"},
                ],
                "seq": 2,
            }
        seen = {"name": "seen", "device_type": "camera", "addr": "tcp://s:1", "seq": 2}
        # PUB drops messages until the subscription is in place: repeat the same event (same seq) until
        # the watcher reacts; duplicates are ignored by sequence number.
        for _ in range(int(WAIT / 0.05)):
            fake.publish("DEVICE_ADDED", **seen)
            if watcher.wait_for(has("missed", "seen"), 0.05):
                break
        assert set(watcher.devices()) == {"missed", "seen"}
        assert sorted(recorder.kinds()) == [("added", "missed"), ("added", "seen")]
    finally:
        fake.stop()


def test_stop_is_prompt_while_the_registry_is_away(context: zmq.Context) -> None:
    watcher = RegistryWatcher(context, f"tcp://127.0.0.1:{free_port()}", list_timeout=10_000)
    watcher.start()
    start = time.monotonic()
    watcher.stop()
    assert not watcher._thread.is_alive()
    assert time.monotonic() - start < WAIT


def test_docs_example_runs() -> None:
    """The example of docs/registry.md runs as printed and prints what the page says."""
    page = Path(__file__).resolve().parents[2] / "docs" / "registry.md"
    if not page.exists():
        pytest.skip("docs/registry.md is not part of this checkout")
    text = page.read_text(encoding="utf-8")
    example = text.split("### Example", 1)[1]
    code = example.split("```python\n", 1)[1].split("```", 1)[0]
    expected = example.split("```text\n", 1)[1].split("```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
