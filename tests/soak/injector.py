"""The seeded fault injector: lanes of faults, bounded in count and in time.

Each :class:`Lane` is a thread with its own random generator, derived from the soak's seed and the
lane's name, that injects its faults one after another with a random pause between them: first one
of each of its kinds (in a random order, and even past the deadline, so a short soak still sees
every kind), then kinds drawn by weight, until its deadline, its count or the soak's ``stop``. Two
lanes run side by side (nodes killed while the registry is away or the disk is full), which is
where faults meet.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from .cluster import Cluster
from .faults import Fault, Outcome

__all__ = ["Lane"]


class Lane(threading.Thread):
    """A thread injecting faults into a cluster.

    Parameters
    ----------
    name : str
        The lane's name (part of its random generator's seed).
    faults : sequence of (Fault, float)
        The faults and their weights.
    cluster : Cluster
        Where they go.
    seed : int
        The soak's seed.
    t0 : float
        When the soak began (monotonic seconds).
    deadline : float
        No fault starts after this (monotonic seconds).
    max_faults : int
        At most this many faults.
    gap : (float, float)
        Bounds of the random pause before each fault, seconds.
    stop : threading.Event
        Ends the lane early (a fault in progress is healed first).
    report : callable
        Called with each :class:`Outcome`.
    """

    def __init__(
        self,
        name: str,
        faults: Sequence[tuple[Fault, float]],
        cluster: Cluster,
        *,
        seed: int,
        t0: float,
        deadline: float,
        max_faults: int,
        gap: tuple[float, float],
        stop: threading.Event,
        report: Callable[[Outcome], None],
    ) -> None:
        super().__init__(name=f"soak-lane-{name}", daemon=True)
        self.faults = list(faults)
        self.cluster = cluster
        self.rng = random.Random(f"{seed}:{name}")
        self.t0 = t0
        self.deadline = deadline
        self.max_faults = max_faults
        self.gap = gap
        self.stop = stop
        self.report = report
        self.errors: list[str] = []

    def plan(self) -> list[Fault]:
        """The first faults: one of each kind, in a random order."""
        first = [fault for fault, _ in self.faults]
        self.rng.shuffle(first)
        return first

    def run(self) -> None:
        first = self.plan()
        kinds, weights = zip(*self.faults, strict=True)
        for number in range(self.max_faults):
            late = time.monotonic() >= self.deadline and number >= len(first)  # one of each kind, always
            if self.stop.wait(self.rng.uniform(*self.gap)) or late:
                return
            fault = first[number] if number < len(first) else self.rng.choices(kinds, weights)[0]
            try:
                outcome = fault.inject(self.cluster, self.rng, self.stop, self.t0)
            except Exception as exc:  # the soak's own failure: reported, and the lane ends
                self.errors.append(f"{fault.kind}: {exc!r}\n{traceback.format_exc()}")
                return
            self.report(outcome)
