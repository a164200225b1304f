"""Contract tests for turntable implementations: subclass a contract, give it one fixture.

* :class:`TurntableContract` (fixture ``turntable``): a
  :class:`~plantimager.commons.turntabledevice.Turntable`, used in-process.
* :class:`TurntableOverRPC` (fixture ``local_turntable``: an ``RPCServer`` implementing
  ``Turntable``, on ``tcp://127.0.0.1:0``, not serving yet): the kit serves it in a thread and
  runs the same tests through a :class:`~plantimager.commons.turntabledevice.TurntableClient`.

::

    from plantimager.testing import TurntableContract

    class TestMyTable(TurntableContract):
        @pytest.fixture
        def turntable(self):
            table = MyTable()
            yield table
            table.close()

The tests wait for moves with :func:`~plantimager.commons.turntabledevice.wait_settled` and for
signals with bounded waits; they move by small angles at :attr:`TurntableContract.fast_speed`
except where a move has to be seen under way (at :attr:`TurntableContract.slow_speed`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from plantimager.commons.errors import PlantImagerError
from plantimager.commons.turntabledevice import TurntableClient, wait_settled

from .fixtures import served_client

__all__ = ["TurntableContract", "TurntableOverRPC"]

_CONTRACT_MARK = pytest.mark.plantimager_contract
_RPC_MARK = pytest.mark.plantimager_over_rpc


def _close(a: float, b: float, tolerance: float) -> bool:
    """Whether two angles are within ``tolerance`` degrees of each other, modulo 360."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d) <= tolerance


class TurntableContract:
    """Tests every turntable must pass (fixture ``turntable``)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK]

    #: Largest error of a settled position, in degrees.
    tolerance: ClassVar[float] = 0.05
    #: Speed used by most tests (degrees per second) and the one that lets a move be seen under way.
    fast_speed: ClassVar[float] = 720.0
    slow_speed: ClassVar[float] = 30.0
    #: Longest wait for any move or signal, in seconds.
    timeout: ClassVar[float] = 15.0

    @pytest.fixture
    def turntable(self) -> Any:
        """The turntable under test: override this fixture in your subclass."""
        pytest.fail(f"{type(self).__name__} must define a `turntable` fixture", pytrace=False)

    def go(self, table: Any, angle: float) -> float:
        """Move ``table`` to ``angle`` at the fast speed and wait until it has settled."""
        table.speed = self.fast_speed
        return wait_settled(table, table.move_to(angle), self.timeout)

    def test_ping(self, turntable: Any) -> None:
        assert turntable.ping() is True

    def test_position_is_an_angle_in_range(self, turntable: Any) -> None:
        position = turntable.position
        assert isinstance(position, float) and 0.0 <= position < 360.0

    def test_a_move_reaches_its_angle_and_settles(self, turntable: Any) -> None:
        start = self.go(turntable, 10.0)
        turntable.speed = self.fast_speed
        number = turntable.move_to(40.0)
        settled = wait_settled(turntable, number, self.timeout)
        assert _close(start, 10.0, self.tolerance)
        assert _close(settled, 40.0, self.tolerance) and _close(turntable.position, 40.0, self.tolerance)
        assert turntable.target == pytest.approx(40.0)
        assert turntable.moving is False
        assert turntable.last_settled() >= number

    def test_move_numbers_increase(self, turntable: Any) -> None:
        turntable.speed = self.fast_speed
        first = turntable.move_to(5.0)
        second = turntable.move_to(6.0)
        assert isinstance(first, int) and second > first
        wait_settled(turntable, second, self.timeout)
        assert turntable.last_settled() == second

    @pytest.mark.parametrize(("asked", "expected"), [(-30.0, 330.0), (725.0, 5.0), (360.0, 0.0)])
    def test_angles_are_taken_modulo_360(self, turntable: Any, asked: float, expected: float) -> None:
        self.go(turntable, expected + 10.0)  # start elsewhere, so the move is a real one
        assert _close(self.go(turntable, asked), expected, self.tolerance)
        assert 0.0 <= turntable.position < 360.0

    def test_home_returns_to_zero(self, turntable: Any) -> None:
        self.go(turntable, 30.0)
        turntable.speed = self.fast_speed
        assert _close(wait_settled(turntable, turntable.home(), self.timeout), 0.0, self.tolerance)

    def test_signals_of_a_move(self, turntable: Any) -> None:
        self.go(turntable, 0.0)
        positions: list[float] = []
        moving: list[bool] = []
        targets: list[float] = []
        settled: list[dict] = []
        done = threading.Event()
        turntable.positionChanged.connect(positions.append)
        turntable.movingChanged.connect(moving.append)
        turntable.targetChanged.connect(targets.append)

        def on_settled(info: dict) -> None:
            settled.append(info)
            done.set()

        turntable.settled.connect(on_settled)
        try:
            number = turntable.move_to(50.0)
            assert done.wait(self.timeout), "no settled signal"
        finally:
            for signal, slot in (
                (turntable.positionChanged, positions.append),
                (turntable.movingChanged, moving.append),
                (turntable.targetChanged, targets.append),
                (turntable.settled, on_settled),
            ):
                signal.disconnect(slot)
        # Signals of the move before this one may still arrive first: look at the last ones.
        ours = [info for info in settled if info["move"] == number]
        assert len(ours) == 1 and _close(ours[0]["position"], 50.0, self.tolerance)
        assert targets and targets[-1] == pytest.approx(50.0)
        assert moving[-2:] == [True, False]
        assert positions and _close(positions[-1], 50.0, self.tolerance)  # the last one is where it stopped

    def test_a_move_takes_time_at_the_speed_set(self, turntable: Any) -> None:
        self.go(turntable, 0.0)
        turntable.speed = self.slow_speed
        assert turntable.speed == pytest.approx(self.slow_speed)
        number = turntable.move_to(90.0)  # three seconds at 30 deg/s
        under_way = turntable.position
        assert turntable.moving is True
        assert 0.0 <= under_way < 90.0 - self.tolerance, f"already at {under_way} just after the start"
        turntable.speed = self.fast_speed
        wait_settled(turntable, turntable.move_to(90.0), self.timeout)  # speeds the rest up
        assert turntable.last_settled() > number

    def test_a_new_move_replaces_the_one_under_way(self, turntable: Any) -> None:
        self.go(turntable, 0.0)
        turntable.speed = self.slow_speed
        turntable.move_to(120.0)
        turntable.speed = self.fast_speed
        last = turntable.move_to(20.0)
        assert _close(wait_settled(turntable, last, self.timeout), 20.0, self.tolerance)
        assert turntable.target == pytest.approx(20.0)

    def test_speed_changes_are_signalled(self, turntable: Any) -> None:
        seen: list[float] = []
        got = threading.Event()

        wanted = self.fast_speed / 2

        def on_speed(value: float) -> None:
            seen.append(value)
            if value == pytest.approx(wanted):
                got.set()

        turntable.speed = self.fast_speed
        turntable.speedChanged.connect(on_speed)
        try:
            turntable.speed = wanted
            assert got.wait(self.timeout), f"no speedChanged({wanted}) after setting it; saw {seen}"
        finally:
            turntable.speedChanged.disconnect(on_speed)
        # Over RPC, signals travel asynchronously: the change made just before connecting
        # may still arrive after it. Nothing else may, and the new value comes last.
        assert seen[-1] == pytest.approx(wanted)
        assert all(v in (pytest.approx(self.fast_speed), pytest.approx(wanted)) for v in seen), seen
        assert turntable.speed == pytest.approx(wanted)

    def test_where_it_was_at_a_past_instant_is_answered_after_it_moved_on(self, turntable: Any) -> None:
        self.go(turntable, 10.0)
        at_ten = time.time()
        self.go(turntable, 40.0)
        at_forty = time.time()
        assert _close(turntable.position_at(at_ten), 10.0, self.tolerance)
        assert _close(turntable.position_at(at_forty), 40.0, self.tolerance)
        # The future is not known: a time to come is answered with where the stage is now.
        assert _close(turntable.position_at(at_forty + 3600.0), turntable.position, self.tolerance)

    @pytest.mark.parametrize("when", [math.nan, math.inf, "now", None, True, 0.0])
    def test_bad_or_forgotten_times_are_refused(self, turntable: Any, when: Any) -> None:
        with pytest.raises((PlantImagerError, ValueError, TypeError)) as info:
            turntable.position_at(when)
        assert "when" in str(info.value)

    @pytest.mark.parametrize("angle", [math.nan, math.inf, -math.inf, "ten", None])
    def test_bad_angles_are_refused_and_nothing_moves(self, turntable: Any, angle: Any) -> None:
        self.go(turntable, 15.0)
        before = turntable.last_settled()
        with pytest.raises((PlantImagerError, ValueError, TypeError)) as info:
            turntable.move_to(angle)
        assert "angle" in str(info.value)
        assert turntable.last_settled() == before and turntable.moving is False
        assert _close(turntable.position, 15.0, self.tolerance)
        assert _close(self.go(turntable, 25.0), 25.0, self.tolerance)  # still usable

    @pytest.mark.parametrize("speed", [0.0, -5.0, math.nan, math.inf, 1e9, "fast"])
    def test_bad_speeds_are_refused(self, turntable: Any, speed: Any) -> None:
        turntable.speed = self.fast_speed
        with pytest.raises((PlantImagerError, ValueError, TypeError)) as info:
            turntable.speed = speed
        assert "speed" in str(info.value)
        assert turntable.speed == pytest.approx(self.fast_speed)


class TurntableOverRPC(TurntableContract):
    """:class:`TurntableContract` run through a :class:`TurntableClient`.

    Provide a ``local_turntable`` fixture: an ``RPCServer`` implementing ``Turntable``, built on
    ``tcp://127.0.0.1:0`` and not serving yet. Each test serves it in a thread and gets a client
    as ``turntable``; the server is stopped and its thread joined after the test.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [_CONTRACT_MARK, _RPC_MARK]

    @pytest.fixture
    def local_turntable(self) -> Any:
        """The server under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `local_turntable` fixture returning an RPCServer "
            "(constructed on tcp://127.0.0.1:0, not serving)",
            pytrace=False,
        )

    @pytest.fixture
    def turntable(self, local_turntable: Any) -> Iterator[Any]:
        """A client of ``local_turntable``, served for the duration of the test."""
        with served_client(local_turntable, TurntableClient) as (client, _):
            yield client
