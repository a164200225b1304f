"""Choosing the common capture instant ``t0``, and measuring how well the cameras kept to it.

The controller sends every node the same wall-clock instant ``t0`` and each node fires at that
instant. ``t0`` must lie far enough ahead that the request reaches every node before it, yet close
enough that nobody waits for nothing. :class:`LeadPolicy` picks the lead from what it has measured:

* the worst recent round trip of each node (pings and status calls, which do no work on the
  node: :class:`RoundTrips`),
* how long the controller took to hand the request to every node in the previous captures,
* and whether a previous hand-over came close to ``t0`` (a node that receives ``t0`` after it has
  passed fires at once): the lead then grows for a while, and shrinks back afterwards.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
import threading
from collections.abc import Iterable, Sequence

__all__ = ["SKEW_BUDGET_MS", "LeadPolicy", "RoundTrips", "clock_flag", "clock_offset", "skew_ms"]

logger = logging.getLogger(__name__)

#: Samples kept per node.
RTT_WINDOW = 16
#: A camera firing later than this after ``t0`` counts as late.
LATE_S = 0.0005
#: Most the lead is lengthened after slow hand-overs, seconds.
MAX_EXTRA_S = 0.1
#: Hand-over time assumed for a first capture, seconds.
FIRST_DISPATCH_S = 0.002
#: The skew a synchronised capture may have, ms: a node whose clock is further than this from NTP
#: time fires that much apart from the others, whatever its timestamps say, and is flagged.
SKEW_BUDGET_MS = 1.0


class RoundTrips:
    """The recent round-trip times of one node. Thread-safe.

    Parameters
    ----------
    window : int
        How many recent samples are kept.
    """

    def __init__(self, window: int = RTT_WINDOW) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """Record one round trip, in seconds."""
        if seconds >= 0:
            with self._lock:
                self._samples.append(seconds)

    def worst(self) -> float | None:
        """The longest recent round trip in seconds, None before the first sample."""
        with self._lock:
            return max(self._samples) if self._samples else None

    def median(self) -> float | None:
        """The median recent round trip in seconds, None before the first sample."""
        with self._lock:
            return statistics.median(self._samples) if self._samples else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)


class LeadPolicy:
    """Picks how far ahead ``t0`` lies, and learns from each capture.

    Parameters
    ----------
    min_lead : float
        Shortest lead, seconds.
    max_lead : float
        Longest lead, seconds.
    margin : float
        Factor applied to the measured round trips and hand-over times.
    """

    def __init__(self, min_lead: float = 0.005, max_lead: float = 1.0, margin: float = 2.0) -> None:
        if not 0 < min_lead <= max_lead:
            raise ValueError(f"need 0 < min_lead <= max_lead, got {min_lead} and {max_lead}")
        self.min_lead = float(min_lead)
        self.max_lead = float(max_lead)
        self.margin = float(margin)
        self._dispatch: collections.deque[float] = collections.deque(maxlen=8)
        self._extra = 0.0
        self._lock = threading.Lock()

    def lead(self, round_trips: Iterable[float | None], nodes: int) -> float:
        """Return the lead for a capture on ``nodes`` nodes whose worst round trips are given.

        A node with no sample yet counts as 1 ms.
        """
        worst_rtt = max((rtt if rtt is not None else 0.001 for rtt in round_trips), default=0.001)
        with self._lock:
            # Before the first capture nothing is known of the hand-over: allow for threads starting.
            dispatch = max(self._dispatch, default=FIRST_DISPATCH_S + 0.0002 * nodes)
            extra = self._extra
        wanted = self.margin * (worst_rtt + dispatch) + 0.001 + extra
        return min(self.max_lead, max(self.min_lead, wanted))

    def observe(self, lateness: Sequence[float], dispatch: float, lead: float) -> None:
        """Learn from a capture.

        A hand-over that took more than half the lead means some request may have reached its
        node after ``t0``: the next leads are longer, and shrink back after captures that went
        well. Cameras that fired late although their request was in time (a busy node, a CPU
        shared with other nodes) are only logged: a longer lead would not help them.

        Parameters
        ----------
        lateness : sequence of float
            For each camera, actual capture time minus ``t0``, seconds.
        dispatch : float
            Seconds from choosing ``t0`` until the last request was handed to its client.
        lead : float
            The lead of that capture, seconds.
        """
        with self._lock:
            self._dispatch.append(max(0.0, dispatch))
            if dispatch > lead / 2:
                self._extra = min(MAX_EXTRA_S, 2 * self._extra + dispatch)
                logger.info(
                    "requests left %.2f ms after t0 was chosen; the next lead is longer", dispatch * 1e3
                )
            else:
                self._extra *= 0.5
        late = max(lateness, default=0.0)
        if late > LATE_S:
            logger.debug("a camera fired %.2f ms after t0", late * 1e3)


def skew_ms(captured_ns: Iterable[int]) -> float | None:
    """Latest minus earliest of some capture times (ns), in milliseconds; None for no time."""
    times = list(captured_ns)
    if not times:
        return None
    return (max(times) - min(times)) / 1e6


def clock_offset(value: object) -> float | None:
    """A clock offset a node reported, in ms, or None if it reported none (or nonsense)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def clock_flag(offset_ms: float | None, budget_ms: float = SKEW_BUDGET_MS) -> str:
    """Why a node's clock spoils its captures ("" when within ``budget_ms`` of NTP time, or unknown).

    A node's capture times are on its own clock: one whose clock is ahead fires early by as much,
    although its timestamps say it fired on time. Only the offset its time service reports shows it.
    """
    if offset_ms is None or abs(offset_ms) <= budget_ms:
        return ""
    side, effect = ("ahead of", "early") if offset_ms > 0 else ("behind", "late")
    return (
        f"clock {abs(offset_ms):.3f} ms {side} NTP time, more than the {budget_ms:g} ms skew budget: "
        f"its cameras fire about that much {effect}"
    )
