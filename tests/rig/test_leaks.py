"""A rig that captures and downloads over and over holds no more threads or descriptors for it.

The counts after N rounds of capture and download equal those after 2N; the rig's fan-out pool,
whose threads start as needed, stays within its bound. (``bench/scale.py`` does the same over 200
captures on larger rigs, and measures what each capture costs.)
"""

from __future__ import annotations

import pytest

from helpers.usage import steady_counts

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0
ROUNDS = 10


def test_repeated_captures_and_downloads_hold_no_more_threads_or_descriptors(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = [spawn(name, cameras=2 if name == "l1" else 1) for name in ("l1", "l2", "l3")]
    for node in nodes:
        node.ready()
    rig = make_rig(dataset=tmp_path / "session")
    assert rig.wait_for_cameras(4, WAIT)

    def rounds(count: int = ROUNDS) -> None:
        for _ in range(count):
            assert len(rig.capture_all().shots) == 4
            assert len(rig.download_all().files) == 4

    rounds(3)  # the pools reach their working size
    # Counts after each block of rounds, until two in a row agree (see steady_counts).
    counts = steady_counts(rounds)
    assert counts[-1] == counts[-2], f"counts after each block of {ROUNDS} rounds: {counts}"
    assert pending_of(nodes) == {"l1": {}, "l2": {}, "l3": {}}
