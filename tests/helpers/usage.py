"""What this process holds: threads and open descriptors, for leak checks."""

from __future__ import annotations

import os
import re
import threading

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
