"""Choosing the common capture instant ``t0``, and measuring how well the cameras kept to it.

The controller sends every node the same wall-clock instant ``t0`` and each node fires at that
instant. ``t0`` must lie far enough ahead that the request reaches every node before it, yet close
enough that nobody waits for nothing. :class:`LeadPolicy` picks the lead from what it has measured:

* the worst recent round trip of each node (pings and status calls, which do no work on the
  node: :class:`RoundTrips`); samples older than 20 s no longer count, so one slow ping (a
  node still starting up, a busy moment) does not lengthen every capture after it,
* how long after ``t0`` was chosen the last node was ready to fire, in the previous captures
  (each node says when its firing threads began to wait for ``t0``: the whole way, hand-over,
  network and the node's own work on the request, measured at capture time; before the first
  capture, and with nodes that do not say, the hand-over time and the round trips stand in),
* and whether a previous hand-over came close to ``t0`` (a node that receives ``t0`` after it has
  passed fires at once): the lead then grows for a while, and shrinks back afterwards.
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "RTT_MAX_AGE_S",
    "SKEW_BUDGET_MS",
    "LeadPolicy",
    "RoundTrips",
    "clock_flag",
    "skew_ms",
]

logger = logging.getLogger(__name__)

#: Samples kept per node.
RTT_WINDOW = 16
#: Round trips older than this no longer count towards the worst one, seconds (the newest counts
#: however old it is).
RTT_MAX_AGE_S = 20.0
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
    max_age : float
        Seconds after which a sample no longer counts towards :meth:`worst` and :meth:`median`,
        unless it is the newest.
    clock : callable, optional
        Monotonic clock in seconds (for tests).
    """

    def __init__(
        self,
        window: int = RTT_WINDOW,
        max_age: float = RTT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._max_age = float(max_age)
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """Record one round trip, in seconds."""
        if seconds >= 0:
            with self._lock:
                self._samples.append((self._clock(), seconds))

    def _recent(self) -> list[float]:
        with self._lock:
            if not self._samples:
                return []
            oldest = self._clock() - self._max_age
            recent = [value for at, value in self._samples if at >= oldest]
            return recent or [self._samples[-1][1]]

    def worst(self) -> float | None:
        """The longest recent round trip in seconds, None before the first sample."""
        recent = self._recent()
        return max(recent) if recent else None

    def median(self) -> float | None:
        """The median recent round trip in seconds, None before the first sample."""
        recent = self._recent()
        return statistics.median(recent) if recent else None

    def age(self) -> float | None:
        """Seconds since the newest sample, None before the first."""
        with self._lock:
            return self._clock() - self._samples[-1][0] if self._samples else None

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
        Factor applied to the measured round trips and hand-over times (before the nodes said
        when they were ready).
    ready_margin : float
        Factor applied to the nodes' readiness, once they say. With 16 nodes sharing 2 CPUs,
        twice the readiness left some nodes still busy at the instant (skew p99 0.8-3.0 ms in
        three runs against 0.8-1.2 ms with three times).
    """

    def __init__(
        self, min_lead: float = 0.005, max_lead: float = 1.0, margin: float = 2.0, ready_margin: float = 3.0
    ) -> None:
        if not 0 < min_lead <= max_lead:
            raise ValueError(f"need 0 < min_lead <= max_lead, got {min_lead} and {max_lead}")
        self.min_lead = float(min_lead)
        self.max_lead = float(max_lead)
        self.margin = float(margin)
        self.ready_margin = float(ready_margin)
        self._dispatch: collections.deque[float] = collections.deque(maxlen=8)
        self._arrival: collections.deque[float] = collections.deque(maxlen=8)
        self._extra = 0.0
        self._lock = threading.Lock()

    def lead(
        self,
        round_trips: Iterable[float | None],
        nodes: int,
        usual: Iterable[float | None] | None = None,
    ) -> float:
        """Return the lead for a capture on ``nodes`` nodes whose worst round trips are given.

        Once captures have reported when their nodes were ready to fire, the lead is the ready
        margin times the latest readiness of the recent captures, never less than half a round
        trip (the way there): half the worst of the ``usual`` (median) round trips when given,
        else of ``round_trips``. A round trip slower than usual was measured while the node was busy
        (encoding, serving a download); readiness already says how long such work delays a
        capture request when one is sent. Before any readiness is known, the margin times the
        worst round trip and hand-over. A node with no round trip yet counts as 1 ms.
        """
        worst_rtt = _slowest(round_trips)
        way = worst_rtt if usual is None else _slowest(usual)
        with self._lock:
            # Before the first capture nothing is known of the hand-over: allow for threads starting.
            dispatch = max(self._dispatch, default=FIRST_DISPATCH_S + 0.0002 * nodes)
            arrival = max(self._arrival, default=None)
            extra = self._extra
        if arrival is not None:
            wanted = self.ready_margin * max(arrival, way / 2) + 0.001 + extra
        else:
            wanted = self.margin * (worst_rtt + dispatch) + 0.001 + extra
        return min(self.max_lead, max(self.min_lead, wanted))

    def observe(
        self, lateness: Sequence[float], dispatch: float, lead: float, arrival: float | None = None
    ) -> None:
        """Learn from a capture.

        A node that was ready to fire (or, when the nodes do not say, a request handed over)
        after half the lead had passed means some node may have been ready only after ``t0``:
        the next leads are longer, and shrink back after captures that went well. Cameras that
        fired late although their node was ready in time (a busy node, a CPU shared with other
        nodes) are only logged: a longer lead would not help them.

        Parameters
        ----------
        lateness : sequence of float
            For each camera, actual capture time minus ``t0``, seconds.
        dispatch : float
            Seconds from choosing ``t0`` until the last request was handed to its client.
        lead : float
            The lead of that capture, seconds.
        arrival : float, optional
            Seconds from choosing ``t0`` until the last node was ready to fire, on the nodes'
            clocks (``ready_at`` in their answers); None if no node said.
        """
        slowest = dispatch if arrival is None else max(0.0, arrival)
        with self._lock:
            self._dispatch.append(max(0.0, dispatch))
            if arrival is not None:
                self._arrival.append(max(0.0, arrival))
            if slowest > lead / 2:
                self._extra = min(MAX_EXTRA_S, 2 * self._extra + slowest)
                logger.info(
                    "a node was ready %.2f ms after t0 was chosen; the next lead is longer", slowest * 1e3
                )
            else:
                self._extra *= 0.5
        late = max(lateness, default=0.0)
        if late > LATE_S:
            logger.debug("a camera fired %.2f ms after t0", late * 1e3)


def _slowest(round_trips: Iterable[float | None]) -> float:
    """The longest of some nodes' round trips, seconds; a node with none yet counts as 1 ms."""
    return max((rtt if rtt is not None else 0.001 for rtt in round_trips), default=0.001)


def skew_ms(captured_ns: Iterable[int]) -> float | None:
    """Latest minus earliest of some capture times (ns), in milliseconds; None for no time."""
    times = list(captured_ns)
    if not times:
        return None
    return (max(times) - min(times)) / 1e6


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
