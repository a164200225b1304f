"""A rig that captures and downloads over and over holds no more threads or descriptors for it.

The counts after N rounds of capture and download equal those after 2N; the rig's fan-out pool,
whose threads start as needed, stays within its bound. (``bench/scale.py`` does the same over 200
captures on larger rigs, and measures what each capture costs.)
"""

from __future__ import annotations

import pytest

from helpers.usage import held
from plantimager.rig.rig import MAX_FANOUT

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

    def rounds(count: int) -> dict[str, int]:
        for _ in range(count):
            assert len(rig.capture_all().shots) == 4
            assert len(rig.download_all().files) == 4
        counts = held()
        assert counts.pop("fan-out threads") <= MAX_FANOUT
        return counts

    rounds(3)  # the pools reach their working size
    # Counts after N rounds and after 2N. A connection being replaced at the moment of counting
    # (a health ping that ran out of time on a busy host) is given another N rounds: a leak grows
    # with every block of rounds, so two blocks in a row never agree.
    counts = [rounds(ROUNDS)]
    while len(counts) < 4 and (len(counts) < 2 or counts[-1] != counts[-2]):
        counts.append(rounds(ROUNDS))
    assert counts[-1] == counts[-2], f"counts after each block of {ROUNDS} rounds: {counts}"
    assert pending_of(nodes) == {"l1": {}, "l2": {}, "l3": {}}
