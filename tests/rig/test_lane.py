"""A lane runs its jobs on a shared pool, never more than its limit at once, taken in the order they came."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from plantimager.rig.lane import Lane

pytestmark = pytest.mark.timeout(30)


def test_a_lane_runs_every_job_in_order_never_more_than_its_limit_at_once():
    running, most, order = 0, 0, []
    lock = threading.Lock()
    release = threading.Event()
    two_in = threading.Barrier(3)  # the lane's two places and this test

    def job(number: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            order.append(number)
        if number < 2:
            two_in.wait(10)  # both places are taken, and the third job must wait
            assert release.wait(10)
        with lock:
            running -= 1
        return number * 10

    with ThreadPoolExecutor(8) as pool:
        lane = Lane(pool, 2)
        futures = [lane.submit(job, n) for n in range(6)]
        two_in.wait(10)
        with lock:
            assert running == 2 and order == [0, 1]
        release.set()
        assert [f.result(10) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert most == 2 and sorted(order) == list(range(6))


def test_a_failing_job_fails_its_future_alone_and_a_lane_of_one_keeps_the_order():
    order = []

    def job(number: int) -> int:
        order.append(number)
        if number == 1:
            raise ValueError("job 1 failed")
        return number

    with ThreadPoolExecutor(2) as pool:
        lane = Lane(pool, 1)
        futures = [lane.submit(job, n) for n in range(3)]
        wait(futures, 10)
    assert futures[0].result() == 0 and futures[2].result() == 2
    assert order == [0, 1, 2]
    with pytest.raises(ValueError, match="job 1 failed"):
        futures[1].result()


def test_a_lane_needs_room_for_one_job():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="limit >= 1"):
        Lane(pool, 0)
