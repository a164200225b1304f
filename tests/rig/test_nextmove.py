"""When a scan turns the table on: after every camera's exposure, with a margin learnt from the captures."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from plantimager.commons.errors import PlantImagerError
from plantimager.commons.turntabledevice import TurntableClient, wait_settled
from plantimager.rig.nextmove import LATE_FACTOR, MAX_MARGIN_S, MIN_MARGIN_S, NextMove, TurnHold
from plantimager.rig.record import CaptureRecord, Shot
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer

T0 = 1_700_000_000.0


def record(*late_s: float, controls: list[dict] | None = None) -> CaptureRecord:
    """A capture at ``T0`` whose cameras fired ``late_s`` seconds after it, their frames' ``controls``."""
    frames = controls or [{} for _ in late_s]
    shots = tuple(
        Shot(
            f"n{i}/cam0",
            f"n{i}",
            f"id{i}",
            0,
            f"{i}.jpg",
            T0 + late,
            late * 1e3,
            1,
            "0" * 64,
            {"controls": frame},
        )
        for i, (late, frame) in enumerate(zip(late_s, frames, strict=True))
    )
    return CaptureRecord(1, "code", Path("."), T0, 5.0, shots, {}, None)


def test_the_margin_is_the_ceiling_until_a_capture_is_seen_then_follows_the_latest_camera():
    hold = TurnHold(0.010)
    assert hold.margin == MAX_MARGIN_S and hold.seconds == pytest.approx(0.010 + MAX_MARGIN_S)
    hold.observe(record(0.0002, 0.0009))  # cameras on time: the floor
    assert hold.margin == MIN_MARGIN_S
    hold.observe(record(0.001, 0.020))  # one camera 20 ms late: four times that
    assert hold.margin == pytest.approx(LATE_FACTOR * 0.020, abs=1e-5)
    assert hold.seconds == pytest.approx(0.010 + LATE_FACTOR * 0.020, abs=1e-5)
    hold.observe(record(0.3))  # never above the ceiling
    assert hold.margin == MAX_MARGIN_S
    hold.observe(record())  # a capture without shots teaches nothing
    assert hold.margin == MAX_MARGIN_S


def test_a_late_camera_is_remembered_for_the_recent_captures_then_forgotten():
    hold = TurnHold(0.0)
    hold.observe(record(0.025))
    for _ in range(7):
        hold.observe(record(0.0))
        assert hold.margin == pytest.approx(LATE_FACTOR * 0.025, abs=1e-5)
    hold.observe(record(0.0))
    assert hold.margin == MIN_MARGIN_S


def test_the_hold_covers_each_frames_own_exposure_and_rolling_shutter_readout():
    hold = TurnHold(0.010)  # configured: 10 ms
    assert hold.taking == pytest.approx(0.010)
    # A global-shutter frame reporting a longer exposure than configured, and a rolling-shutter
    # frame whose 100 ms frame period bounds its readout: the slower of the two sets the hold.
    hold.observe(
        record(
            0.0005,
            0.0005,
            controls=[{"ExposureTime": 30_000}, {"ExposureTime": 8_000, "FrameDuration": 100_000}],
        )
    )
    assert hold.taking == pytest.approx(0.108)
    assert hold.seconds == pytest.approx(0.108 + MIN_MARGIN_S)
    # Frames that say nothing usable fall back to the configured exposure, with no readout.
    for junk in ("30000", float("nan"), True, None, [1]):
        other = TurnHold(0.010)
        other.observe(record(0.0, controls=[{"ExposureTime": junk, "FrameDuration": junk}]))
        assert other.taking == pytest.approx(0.010), junk
    for junk in (None, [30_000], "ExposureTime"):  # controls that are not a mapping at all
        other = TurnHold(0.010)
        other.observe(record(0.0, controls=[junk]))
        assert other.taking == pytest.approx(0.010), junk
    # Taken as the longest of the recent captures, then forgotten like lateness.
    for _ in range(7):
        hold.observe(record(0.0, controls=[{"ExposureTime": 10_000}]))
        assert hold.taking == pytest.approx(0.108)
    hold.observe(record(0.0, controls=[{"ExposureTime": 10_000}]))
    assert hold.taking == pytest.approx(0.010)


def test_a_rolling_shutter_camera_still_reading_out_when_the_table_turned_is_named():
    hold = TurnHold(0.010)
    capture = record(
        0.001, 0.001, controls=[{"ExposureTime": 10_000}, {"ExposureTime": 10_000, "FrameDuration": 50_000}]
    )
    assert hold.late_cameras(capture, T0 + 0.020) == ["n1/cam0"]  # exposed, but rows still being read
    assert hold.late_cameras(capture, T0 + 0.070) == []


def test_cameras_still_exposing_when_the_table_turned_are_named():
    hold = TurnHold(0.010)
    capture = record(0.001, 0.050)
    assert hold.late_cameras(capture, T0 + 0.100) == []
    assert hold.late_cameras(capture, T0 + 0.055) == ["n1/cam0"]
    assert hold.late_cameras(capture, T0 + 0.005) == ["n0/cam0", "n1/cam0"]


@pytest.fixture
def table() -> Iterator[TurntableClient]:
    context = zmq.Context()
    server = TurntableServer(context, "tcp://127.0.0.1:0", backend=DummyTurntable(), speed=720.0)
    with serve_in_thread(server):
        client = TurntableClient(context, server.address, timeout=5000)
        yield client
        client.close()
    server.close()
    context.destroy(linger=0)


def test_the_next_move_starts_its_hold_after_the_instant_and_reaches_its_angle(table):
    move = NextMove(table, 90.0, 0.05)
    assert move.result(1.0) is None  # never armed: no move
    t0 = time.time() + 0.02
    move.arm(t0)
    number = move.result(5.0)
    assert number is not None and move.at >= t0 + 0.05
    assert wait_settled(table, number, 5.0) == pytest.approx(90.0)


def test_a_refused_next_move_is_an_error_naming_the_refusal(table):
    move = NextMove(table, math.nan, 0.0)
    move.arm(time.time())
    with pytest.raises(PlantImagerError, match="refused its next move"):
        move.result(5.0)
