"""Simulated cameras on a simulated turntable: each sees the plant turned by the table's angle as it fires."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from plantimager.camera.dummy import DummyBackend
from plantimager.camera.world import TurntableLink
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.examples.scene import render_view
from plantimager.commons.turntabledevice import TurntableClient, wait_settled
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer

SIZE = (160, 120)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def registry(ctx: zmq.Context) -> Iterator[DeviceRegistry]:
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def table(ctx: zmq.Context, registry: DeviceRegistry) -> Iterator[TurntableClient]:
    """A simulated turntable registered as ``table1``, and a client to drive it."""
    server = TurntableServer(ctx, "tcp://127.0.0.1:0", backend=DummyTurntable(), speed=720.0)
    with serve_in_thread(server):
        assert server.register_to_registry("turntable", "table1", registry.url) == "table1"
        client = TurntableClient(ctx, server.address, timeout=5000)
        yield client
        client.close()
    server.close()


def camera(index: int, registry: DeviceRegistry, name: str = "table1") -> DummyBackend:
    return DummyBackend(
        index, SIZE, turntable=name, turntable_registry=registry.url, render_size=SIZE, first_view=index * 6
    )


def test_cameras_see_the_plant_turned_by_the_angle_the_table_has_when_they_fire(table, registry):
    cams = [camera(0, registry), camera(1, registry)]
    try:
        seen = {}
        for angle in (0.0, 90.0, 200.0):
            wait_settled(table, table.move_to(angle), 10)
            for cam in cams:
                frame = cam.capture()
                assert frame.metadata["turntable_deg"] == angle
                # Exactly the renderer's view from the camera's azimuth with the plant turned, on
                # the table's dotted top.
                azimuth = 360.0 * cam.view / 24
                on_table = render_view(azimuth, size=SIZE, object_deg=angle, turntable=True)
                assert np.array_equal(frame.image, on_table)
                assert not np.array_equal(on_table, render_view(azimuth, size=SIZE, object_deg=angle))
                seen[cam.index, angle] = frame.image
        assert not np.array_equal(seen[0, 0.0], seen[0, 90.0])
        assert not np.array_equal(seen[0, 90.0], seen[1, 90.0])
    finally:
        for cam in cams:
            cam.close()


def test_an_unknown_turntable_fails_the_capture_with_its_name(table, registry):
    cam = camera(0, registry, name="no-such-table")
    try:
        with pytest.raises(PlantImagerError, match=r"no turntable named 'no-such-table'.*table1"):
            cam.capture()
    finally:
        cam.close()


def test_a_camera_keeping_the_stills_of_a_plan_renders_nothing_when_it_is_scanned_again(
    table, registry, monkeypatch
):
    import plantimager.camera.views as views

    renders: list[float] = []
    real = views.render_view

    def counted(*args, **kwargs):
        renders.append(kwargs["object_deg"])
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "render_view", counted)
    angles = (0.0, 120.0, 240.0)
    keeping = DummyBackend(
        0, SIZE, turntable="table1", turntable_registry=registry.url, render_size=SIZE, stills_kept=3
    )
    forgetting = camera(1, registry)  # keeps one still (and the default 4 renderings)
    try:

        def scan() -> dict[tuple[int, float], np.ndarray]:
            frames = {}
            for angle in angles:
                wait_settled(table, table.move_to(angle), 10)
                for cam in (keeping, forgetting):
                    frame = cam.capture()
                    assert frame.metadata["turntable_deg"] == angle
                    frames[cam.index, angle] = frame.image
            return frames

        first = scan()
        assert sorted(set(renders)) == list(angles)
        renders.clear()
        second = scan()
        assert renders == []  # every view of the plan was kept
        for angle in angles:
            # The same still, not made again; the camera that keeps one makes each again.
            assert second[0, angle] is first[0, angle]
            assert second[1, angle] is not first[1, angle]
            assert np.array_equal(second[1, angle], first[1, angle])
    finally:
        keeping.close()
        forgetting.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_stills_kept_must_be_a_positive_int(bad):
    with pytest.raises(ValidationError, match=r"stills_kept must be an int >= 1"):
        DummyBackend(0, SIZE, stills_kept=bad)


def test_a_capture_finding_its_still_ready_does_no_pixel_work(monkeypatch):
    # The firing thread is still real-time when the camera is asked for its frame: any work there
    # (even the tone table of the controls) delays the firing of the other cameras of the host.
    from plantimager.camera import dummy

    camera = DummyBackend(0, SIZE)
    calls: list[str] = []
    real_table, real_render = dummy.tone_table, dummy.render_still
    monkeypatch.setattr(dummy, "tone_table", lambda *a: calls.append("tone_table") or real_table(*a))
    monkeypatch.setattr(dummy, "render_still", lambda *a: calls.append("render") or real_render(*a))
    first = camera.capture().image  # rendered ahead when the camera was made
    assert calls == [] and camera.capture().image is first
    camera.set_controls({"ExposureTime": 20_000})
    camera.capture()
    assert calls.count("render") == 1 and calls.count("tone_table") == 1
    camera.close()


def test_a_turntable_cannot_turn_images_of_ones_own(registry):
    with pytest.raises(ValidationError, match="turntable"):
        DummyBackend(0, SIZE, images=[np.zeros((8, 8, 3), np.uint8)], turntable="table1")


def test_a_link_finds_a_resting_table_ahead_and_announces_its_angle(table, registry):
    wait_settled(table, table.move_to(135.0), 10)
    announced: list[float] = []
    heard = threading.Event()

    def on_target(angle: float) -> None:
        announced.append(angle)
        heard.set()

    link = TurntableLink("table1", registry.url, on_target=on_target)
    try:
        link.look_ahead()
        assert heard.wait(10)
        assert announced == [135.0]  # the view of the first capture can be prepared before it
    finally:
        link.close()


def test_a_link_looking_for_a_missing_table_announces_nothing_and_closes(registry):
    heard = threading.Event()
    link = TurntableLink("no-such-table", registry.url, timeout_ms=500, on_target=lambda _a: heard.set())
    link.look_ahead()
    link.close()  # waits for the look to end
    assert not heard.is_set()
    with pytest.raises(PlantImagerError, match="closed"):
        link.angle()


def test_a_link_asked_for_a_past_instant_gets_the_angle_of_that_instant(table, registry):
    link = TurntableLink("table1", registry=registry.url)
    try:
        wait_settled(table, table.move_to(30.0), 10)
        shot = time.time()
        table.speed = 30.0
        table.move_to(120.0)  # three seconds under way
        assert link.angle(shot) == 30.0
        assert link.angle() != 30.0  # while "now" has moved on
    finally:
        table.speed = 720.0
        wait_settled(table, table.move_to(120.0), 10)
        link.close()


def test_a_move_begun_after_the_shot_does_not_turn_the_view(table, registry, monkeypatch):
    cam = camera(0, registry)
    try:
        wait_settled(table, table.move_to(30.0), 10)
        link = cam._world
        asked = link.angle

        def late(when=None):  # the table starts its next move before the camera asks
            table.move_to(200.0)
            return asked(when)

        monkeypatch.setattr(link, "angle", late)
        frame = cam.capture()
        assert frame.metadata["turntable_deg"] == 30.0
        assert np.array_equal(frame.image, render_view(0.0, size=SIZE, object_deg=30.0, turntable=True))
    finally:
        cam.close()
