"""Waiting for an instant, and the OS scheduling of the threads that wait.

A camera fires at a wall-clock instant: :func:`wait_until` sleeps, then sleeps in short turns, then
spins briefly, so it returns on time; :func:`tighten_timer_slack` lets a thread's sleeps end on time,
:func:`realtime_thread` lets a firing thread take a CPU at once, and :func:`lower_thread_priority`
keeps encoding threads out of its way.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time

__all__ = [
    "SPIN_NS",
    "TURN_NS",
    "WAKE_NS",
    "lower_thread_priority",
    "ordinary_thread",
    "realtime_thread",
    "sleep_until",
    "tighten_timer_slack",
    "wait_until",
]

logger = logging.getLogger(__name__)

#: From this long before the instant, a firing thread sleeps in short turns, in ns.
WAKE_NS = 1_000_000
#: Length of those turns, in ns.
TURN_NS = 50_000
#: The last part of the wait, a busy loop, in ns.
SPIN_NS = 50_000
_PR_SET_TIMERSLACK = 29


def wait_until(at_ns: int) -> None:
    """Return at wall-clock instant ``at_ns``: sleep, then sleep in short turns, then spin briefly.

    The thread sleeps until :data:`WAKE_NS` before the instant, then in turns of :data:`TURN_NS`
    until :data:`SPIN_NS` before it, then spins on ``time.time_ns()``. The turns keep the process
    ready to run (its memory in cache), so its last wake-up is quick even on a host whose CPUs
    several nodes share, and each turn lets go of the CPU and of the interpreter lock for the other
    cameras; the busy part is kept short, as it holds a CPU another node may need to fire. The
    sleeps end on time once the thread's timer slack is lowered (:func:`tighten_timer_slack`). An
    instant in the past returns at once. The caller bounds how far ahead it lies.
    """
    while True:
        remaining = at_ns - time.time_ns()
        if remaining <= 0:
            return
        if remaining > WAKE_NS:
            time.sleep(min((remaining - WAKE_NS) / 1e9, 0.25))
        elif remaining > SPIN_NS:
            time.sleep(min(TURN_NS, remaining - SPIN_NS) / 1e9)


def sleep_until(at_ns: int) -> None:
    """Sleep until wall-clock instant ``at_ns`` (no spinning: for waits that need no precision)."""
    while (remaining := at_ns - time.time_ns()) > 0:
        time.sleep(min(remaining / 1e9, 0.25))


def tighten_timer_slack() -> None:
    """Let the calling thread's sleeps end on time (Linux timer slack 1 ns instead of 50 us).

    Best effort: does nothing where ``prctl`` is not available.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def realtime_thread(priority: int) -> bool:
    """Run the calling thread under the real-time FIFO policy at ``priority`` (1-99); best effort.

    A woken FIFO thread takes a CPU from any ordinary thread at once, so a camera fires on time
    however busy the host is. It only suits a thread that sleeps almost all the time and runs
    briefly, as a firing thread does from its wait to its camera's shot: :func:`ordinary_thread`
    ends it. Where not allowed (not Linux, no privilege) nothing changes.

    Returns
    -------
    bool
        Whether the thread now runs under the FIFO policy.
    """
    if priority <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(min(priority, 99)))
    except (OSError, AttributeError) as exc:
        logger.debug("firing threads keep ordinary scheduling (real-time priority refused: %s)", exc)
        return False
    return True


def ordinary_thread() -> None:
    """Put the calling thread back under the ordinary (time-sharing) policy; best effort."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment``; best effort, on Linux only.

    Linux keeps a nice value per thread, which ``setpriority`` reaches by the thread's id.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
