"""Where a turntable was at a past instant, from the record of its moves."""

from __future__ import annotations

import math

import pytest

from plantimager.commons.errors import ValidationError
from plantimager.turntable.history import KEPT_MOVES, MoveHistory


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_rest_and_moves_are_answered_for_any_recent_instant():
    clock = Clock()
    history = MoveHistory(350.0, clock=clock)
    clock.now = 1_010.0
    history.started(350.0, 20.0, 10.0)  # 30 degrees the short way over 0: 3 s
    clock.now = 1_020.0
    assert history.at(1_005.0) == 350.0  # at rest before the move
    assert history.at(1_011.5) == pytest.approx(5.0)  # half way, across 0
    assert history.at(1_013.0) == 20.0  # exactly where it was sent once there
    # A move replacing one under way: each holds until the next began.
    history.started(history.at(1_020.0), 100.0, 40.0)
    clock.now = 1_021.0
    history.started(60.0, 0.0, 60.0)
    clock.now = 1_030.0
    assert history.at(1_020.5) == pytest.approx(40.0)
    assert history.at(1_021.5) == pytest.approx(30.0)
    assert history.at(1_029.0) == 0.0


def test_the_future_is_the_position_now():
    clock = Clock()
    history = MoveHistory(0.0, clock=clock)
    history.started(0.0, 90.0, 10.0)
    clock.now += 3.0
    assert history.at(clock.now + 100.0) == pytest.approx(30.0)  # not 90: a move may replace it


@pytest.mark.parametrize("when", [math.nan, -math.inf, "1000", None, True, [1_000.0]])
def test_bad_times_are_refused_naming_them(when):
    with pytest.raises(ValidationError, match="when must be a time"):
        MoveHistory(0.0, clock=Clock()).at(when)


def test_an_instant_older_than_the_moves_remembered_is_refused():
    clock = Clock()
    history = MoveHistory(0.0, clock=clock)
    with pytest.raises(ValidationError, match="before the oldest of the 1 moves"):
        history.at(999.0)
    for step in range(KEPT_MOVES):
        clock.now += 1.0
        history.started(float(step), float(step + 1), 100.0)
    with pytest.raises(ValidationError, match=f"before the oldest of the {KEPT_MOVES} moves"):
        history.at(1_000.5)  # the first move was forgotten
    assert history.at(1_001.0) == 0.0  # the oldest one remembered, at its start
