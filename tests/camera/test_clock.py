"""Clock offset from chrony: parsing ``chronyc -c tracking``, running it, caching, and rig warnings."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from plantimager.camera import clock
from plantimager.camera.clock import CLOCK_WARN_MS, clock_offset_ms, clock_warnings, parse_tracking
from plantimager.camera.dummy import DummyBackend
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.spool import Spool
from plantimager.commons.errors import ValidationError

pytestmark = pytest.mark.timeout(30)

# What ``chronyc -c tracking`` prints: one line, 14 fields. System time (5th field) is chrony's
# remaining correction: negative = the clock is fast (ahead), positive = slow (behind).
FAST = (
    "C0A80A01,192.168.10.1,3,1718000000.123456789,-0.000012345,-0.000010021,0.000020114,"
    "-12.345,-0.001,0.050,0.000402117,0.000101234,64.5,Normal\n"
)
SLOW = (
    "C0A80A01,rig-controller.lan,3,1718000064.987654321,0.000250000,0.000180000,0.000090000,"
    "7.891,0.002,0.031,0.000380000,0.000095000,64.2,Normal\n"
)
EXACT = (
    "7F7F0101,127.127.1.1,10,1718000100.000000000,-0.000000000,0.000000000,0.000000000,"
    "0.000,0.000,0.000,0.000000000,0.000010000,16.0,Normal\n"
)
UNSYNCHRONISED = (
    "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,"
    "1.000000000,1.000000000,0.0,Not synchronised\n"
)
HUMAN = """Reference ID    : C0A80A01 (192.168.10.1)
Stratum         : 3
Ref time (UTC)  : Mon Jun 10 06:13:20 2024
System time     : 0.000012345 seconds fast of NTP time
Last offset     : -0.000010021 seconds
RMS offset      : 0.000020114 seconds
Frequency       : 12.345 ppm slow
Residual freq   : -0.001 ppm
Skew            : 0.050 ppm
Root delay      : 0.000402117 seconds
Root dispersion : 0.000101234 seconds
Update interval : 64.5 seconds
Leap status     : Normal
"""


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_fast_clock() -> None:
    tracking = parse_tracking(FAST)
    assert tracking.reference_id == "C0A80A01" and tracking.reference == "192.168.10.1"
    assert tracking.stratum == 3 and tracking.leap_status == "Normal" and tracking.synchronised
    assert tracking.system_time_s == -0.000012345
    assert tracking.offset_ms == pytest.approx(0.012345)  # fast: ahead of NTP time, positive
    assert tracking.max_error_ms == pytest.approx((0.000012345 + 0.000101234 + 0.000402117 / 2) * 1000)


def test_parse_slow_clock() -> None:
    tracking = parse_tracking(SLOW)
    assert tracking.reference == "rig-controller.lan"
    assert tracking.offset_ms == pytest.approx(-0.25)  # slow: behind NTP time, negative


def test_parse_exact_clock_is_zero_not_minus_zero() -> None:
    offset = parse_tracking(EXACT).offset_ms
    assert offset == 0.0 and str(offset) == "0.0"


def test_parse_unsynchronised() -> None:
    assert not parse_tracking(UNSYNCHRONISED).synchronised


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (HUMAN, "one line"),
        ("506 Cannot talk to daemon\n", "14 comma-separated fields"),
        ("", "one line"),
        (FAST.replace(",Normal", ""), "got 13"),
        (FAST.replace("-0.000012345", "fast"), "non-numeric"),
        (FAST.replace("-0.000012345", "nan"), "non-finite"),
        (FAST + FAST, "one line"),
    ],
)
def test_parse_refuses_anything_else(text: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse_tracking(text)


# -- running chronyc -------------------------------------------------------------------------------
class FakeChronyc:
    """A ``chronyc`` script on ``PATH`` that prints what the test chooses and logs its calls."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "calls.log"
        self.path = folder / "chronyc"

    def answers(self, output: str, status: int = 0, delay: float = 0.0) -> None:
        (self.folder / "output.txt").write_text(output)
        sleep = f"exec sleep {delay}\n" if delay else ""
        self.path.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> "{self.log}"\n'
            f"{sleep}"
            f'cat "{self.folder / "output.txt"}"\n'
            f"exit {status}\n"
        )
        self.path.chmod(0o755)

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def chronyc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChronyc]:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    clock.clear_cache()
    yield FakeChronyc(folder)
    clock.clear_cache()


def test_offset_from_chronyc(chronyc: FakeChronyc) -> None:
    chronyc.answers(FAST)
    assert clock_offset_ms() == pytest.approx(0.012345)
    assert chronyc.calls == ["-n -c tracking"]


def test_offset_is_cached_for_a_few_seconds(chronyc: FakeChronyc) -> None:
    chronyc.answers(SLOW)
    assert clock_offset_ms() == pytest.approx(-0.25)
    chronyc.answers(FAST)
    assert clock_offset_ms() == pytest.approx(-0.25), "measured again instead of using the cache"
    assert len(chronyc.calls) == 1
    assert clock_offset_ms(max_age=0) == pytest.approx(0.012345)
    assert len(chronyc.calls) == 2


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("506 Cannot talk to daemon\n", 1),  # chronyd not running
        (UNSYNCHRONISED, 0),  # running, but no source yet: no meaningful offset
        (HUMAN, 0),  # not the CSV format asked for
    ],
)
def test_no_offset_when_chrony_cannot_tell(chronyc: FakeChronyc, output: str, status: int) -> None:
    chronyc.answers(output, status)
    assert clock_offset_ms(max_age=0) is None


def test_no_offset_when_chronyc_hangs(chronyc: FakeChronyc) -> None:
    chronyc.answers(FAST, delay=10)
    started = time.monotonic()
    assert clock_offset_ms(max_age=0) is None
    assert time.monotonic() - started < clock.CHRONYC_TIMEOUT_S + 2


def test_no_offset_without_chronyc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    clock.clear_cache()
    try:
        assert clock_offset_ms(max_age=0) is None
    finally:
        clock.clear_cache()


def test_node_status_reports_the_offset(chronyc: FakeChronyc, ctx: zmq.Context, tmp_path: Path) -> None:
    chronyc.answers(SLOW)
    spool = Spool(tmp_path / "spool")
    node = CameraNodeServer(
        ctx,
        "tcp://127.0.0.1:0",
        backends=[DummyBackend(0, (64, 64))],
        spool=spool,
        node_id="n1",
        stream_port=None,
    )
    try:
        assert node.status()["clock_offset_ms"] == pytest.approx(-0.25)
    finally:
        node.close()
        spool.close()


# -- warnings for the controller -------------------------------------------------------------------
def _status(name: str, offset: object) -> dict:
    return {"id": f"id-{name}", "name": name, "clock_offset_ms": offset}


def test_agreeing_clocks_give_no_warning() -> None:
    statuses = [_status("a", 0.2), _status("b", -0.3), _status("c", 0.6)]
    assert CLOCK_WARN_MS == 1.0
    assert clock_warnings(statuses) == []  # spread 0.9 ms


def test_disagreeing_clocks_are_named() -> None:
    statuses = [_status("a", 0.2), _status("b", -0.9), _status("c", 0.6)]
    (warning,) = clock_warnings(statuses)
    assert "1.500 ms" in warning and "more than 1 ms" in warning
    assert "c is at +0.600 ms" in warning and "b at -0.900 ms" in warning
    assert clock_warnings(statuses, threshold_ms=1.6) == []


def test_unknown_offsets_are_reported_only_next_to_known_ones() -> None:
    assert clock_warnings([_status("a", None), _status("b", None)]) == []  # no chrony anywhere
    warnings = clock_warnings([_status("a", 0.1), _status("b", None), {"id": "x", "clock_offset_ms": True}])
    assert warnings == [
        "clock offset unknown for b, x: chrony is not running or not synchronised there, so their "
        "capture times cannot be checked"
    ]


def test_a_single_node_cannot_disagree() -> None:
    assert clock_warnings([_status("a", 25.0)]) == []
    assert clock_warnings([]) == []


def test_a_clock_watch_measures_in_the_background_and_never_makes_a_reader_wait() -> None:
    answers = iter([0.5, -2.0])
    measured = threading.Condition()
    calls: list[float | None] = []

    def source() -> float | None:
        value = next(answers, None)
        with measured:
            calls.append(value)
            measured.notify_all()
        return value

    def watches() -> int:
        return sum(t.name == "clock-watch" for t in threading.enumerate())

    before = watches()
    watch = clock.ClockWatch(interval=0.01, source=source)
    try:
        with measured:
            # The fourth call starts only once the third answer (none) is stored.
            assert measured.wait_for(lambda: len(calls) >= 4, 10)
        assert watch.offset_ms is None  # the third measurement on: the source knows no more
        assert calls[:2] == [0.5, -2.0]
    finally:
        watch.close()
    assert watches() == before, "close() left the watch's thread running"


def test_a_simulated_node_reports_the_clock_offset_its_dummy_camera_was_given(
    ctx: zmq.Context, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    node = CameraNodeServer(
        ctx,
        "tcp://127.0.0.1:0",
        backends=[DummyBackend(0, (64, 64), clock_offset_ms=2.5), DummyBackend(1, (64, 64))],
        spool=spool,
        node_id="n1",
        stream_port=None,
        settle_ms=0,
    )
    try:
        assert node.status()["clock_offset_ms"] == 2.5
        assert node.start_capture("c1")["clock_offset_ms"] == 2.5
    finally:
        node.close()
        spool.close()


@pytest.mark.parametrize("bad", ["2", float("nan"), True, float("inf")])
def test_a_dummy_camera_refuses_a_clock_offset_that_is_not_a_number(bad: object) -> None:
    with pytest.raises(ValidationError, match="clock_offset_ms must be a number of ms"):
        DummyBackend(0, (64, 64), clock_offset_ms=bad)
