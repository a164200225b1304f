"""What this process holds: threads and open descriptors, for leak checks."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable

#: Threads of the rig's fan-out pool: started as needed, bounded by the pool's size.
FAN_OUT = re.compile(r"rig_\d+")


def held() -> dict[str, int]:
    """Threads of this process (the rig's fan-out pool counted apart) and open descriptors."""
    names = [thread.name for thread in threading.enumerate()]
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor os.listdir itself used, closed meanwhile
            continue
    return {
        "threads": sum(not FAN_OUT.fullmatch(name) for name in names),
        "fan-out threads": sum(bool(FAN_OUT.fullmatch(name)) for name in names),
        "sockets": sum(target.startswith("socket:") for target in targets),
        "descriptors": len(targets),
    }


def steady_counts(block: Callable[[], None], max_blocks: int = 4) -> list[dict[str, int]]:
    """Run ``block`` and count what is held after it, until two counts in a row agree.

    A connection being replaced or a socket being closed by ZeroMQ's reaper at the moment of
    counting makes one count differ once; a leak grows with every block, so two blocks in a row
    never agree. Returns the counts (fan-out threads left out, after checking their bound); the
    caller asserts the last two are equal.
    """
    from plantimager.rig.rig import MAX_FANOUT

    counts: list[dict[str, int]] = []
    while len(counts) < max_blocks and (len(counts) < 2 or counts[-1] != counts[-2]):
        block()
        count = held()
        assert count.pop("fan-out threads") <= MAX_FANOUT, count
        counts.append(count)
    return counts
