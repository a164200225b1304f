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


def record(*late_s: float) -> CaptureRecord:
    """A capture at ``T0`` whose cameras fired ``late_s`` seconds after it."""
    shots = tuple(
        Shot(f"n{i}/cam0", f"n{i}", f"id{i}", 0, f"{i}.jpg", T0 + late, late * 1e3, 1, "0" * 64)
        for i, late in enumerate(late_s)
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
