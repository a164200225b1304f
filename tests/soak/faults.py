"""The faults a soak injects, one small class each.

Every fault heals what it broke before :meth:`inject` returns (a killed process is started again, a
stopped one continued, the disk freed), so the soak can end at any point between two faults. Holding
a fault for a while (a hung node, a full disk, a registry away) waits on the soak's ``stop`` event,
so the end of a soak never waits for a fault to run its course.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass

from .cluster import START_WAIT, Cluster
from .controller import LIMITS
from .disk import Filler

__all__ = [
    "ControllerKill",
    "DiskFull",
    "Fault",
    "NodeHang",
    "NodeKill",
    "Outcome",
    "RegistryRestart",
]

#: A hung node stays stopped at least this much longer than the controller's longest call limit, s.
HANG_MARGIN_S = 1.0
#: Longest wait of a restarted controller for every camera before it goes on, seconds.
RESTART_WAIT_S = 10.0
#: Longest wait for the registry (and the controller) to see every node again, seconds.
RECOVERY_WAIT_S = 60.0


@dataclass
class Outcome:
    """What one injected fault did.

    Attributes
    ----------
    kind : str
        The fault's kind.
    target : str
        What it hit (a node name, ``registry``, ``controller``, ``dataset disk``).
    at : float
        When it started, seconds since the soak began.
    seconds : float
        How long it lasted, until healed.
    detail : str
        What happened, for the log.
    measured : dict
        Figures it measured (e.g. ``registry_s``: seconds until the registry listed every node
        again after a restart).
    """

    kind: str
    target: str
    at: float
    seconds: float
    detail: str = ""
    measured: dict[str, float | None] | None = None


class Fault:
    """A fault: :meth:`inject` breaks something, waits, heals it, and says what it did."""

    kind = "fault"

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        """Inject the fault into ``cluster`` (``t0``: when the soak began, monotonic seconds)."""
        raise NotImplementedError

    @staticmethod
    def pick_node(cluster: Cluster, rng: random.Random) -> str | None:
        """A node that runs and is not stopped, chosen by ``rng`` (cluster lock held)."""
        candidates = sorted(cluster.running_nodes())
        return rng.choice(candidates) if candidates else None


class NodeKill(Fault):
    """SIGKILL a random node and start it again at once, with the same spool and state folder."""

    kind = "node killed"

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        began = time.monotonic()
        with cluster.lock:
            name = self.pick_node(cluster, rng)
            if name is None:
                return Outcome(self.kind, "-", began - t0, 0.0, "no node to kill")
            proc = cluster.nodes[name]
            status = proc.kill()
            restarted = time.monotonic()
            proc.start()
            # Nothing else happens until it registered again and the controller has its camera back.
            served = proc.wait_for(r"^registered as ", START_WAIT)
            registered = time.monotonic() - restarted
            cluster.state.wait_until(
                lambda s: s.cameras_at > restarted and s.cameras >= len(cluster.running_nodes()),
                RECOVERY_WAIT_S,
            )
        took = time.monotonic() - began
        # The node's own time to register; ``took`` also holds the wait for the controller to have
        # its camera back (as long as RECOVERY_WAIT_S when the controller is stopped meanwhile).
        detail = (
            f"exit {status}; registered again after {registered:.1f} s"
            if served
            else f"exit {status}; NOT registered again within {registered:.1f} s"
        )
        return Outcome(self.kind, name, began - t0, took, detail)


class NodeHang(Fault):
    """SIGSTOP a random node for longer than the controller's call limits, then SIGCONT it."""

    kind = "node hung"

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        longest = max(LIMITS.call, LIMITS.capture, LIMITS.transfer) / 1000
        hold = longest + HANG_MARGIN_S + rng.uniform(0.0, 2.0)
        began = time.monotonic()
        with cluster.lock:
            name = self.pick_node(cluster, rng)
            if name is None:
                return Outcome(self.kind, "-", began - t0, 0.0, "no node to hang")
            proc = cluster.nodes[name]
            proc.send(signal.SIGSTOP)
        stop.wait(hold)  # the fault itself: the node does nothing for this long
        with cluster.lock:
            proc.send(signal.SIGCONT)
        took = time.monotonic() - began
        return Outcome(self.kind, name, began - t0, took, f"stopped for {took:.1f} s")


class RegistryRestart(Fault):
    """SIGKILL the registry, leave it away for a moment, start it again on the same port.

    Measures how long until the new registry lists every running node again (they register
    again on their next heartbeat), and how many cameras the controller lost meanwhile.
    """

    kind = "registry restarted"

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        began = time.monotonic()
        with cluster.lock:  # no node is killed or hung while the recovery is measured
            # First the controller has every camera, and has had for a second (a node restarted lately
            # is back at its new address): what it loses then is the registry's doing.
            cluster.state.wait_until(
                lambda s: s.cameras >= len(cluster.running_nodes()) and time.monotonic() - s.cameras_at >= 1,
                RECOVERY_WAIT_S,
            )
            before = cluster.state.mark_cameras()
            status = cluster.registry.kill()
            stop.wait(rng.uniform(0.5, 3.0))  # the registry is away
            cluster.start_registry()
            back = time.monotonic()
            expected = cluster.running_nodes()
            registry_s = cluster.registered(expected, RECOVERY_WAIT_S)
            lost = max(0, before - cluster.state.cameras_low)
            rig_s: float | None = 0.0
            if lost:  # the controller dropped some: how long until it had them all again
                rig_s = None
                if cluster.state.wait_until(
                    lambda s: s.cameras >= before, max(0.0, RECOVERY_WAIT_S - (time.monotonic() - back))
                ):
                    rig_s = max(0.0, cluster.state.cameras_at - back)
        took = time.monotonic() - began
        seen = f"listed again after {registry_s:.2f} s" if registry_s is not None else "NOT all listed again"
        return Outcome(
            self.kind,
            "registry",
            began - t0,
            took,
            f"exit {status}; every node {seen}; the controller lost {lost} camera(s)",
            {"registry_s": registry_s, "rig_s": rig_s, "rig_lost": float(lost)},
        )


class ControllerKill(Fault):
    """SIGKILL the controller in the middle of a download and start it again on the same dataset."""

    kind = "controller killed"

    def __init__(self, wait: float = 60.0) -> None:
        self.wait = wait

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        began = time.monotonic()
        proc = cluster.controller
        assert proc is not None
        images = rng.randint(1, max(1, len(cluster.nodes) // 2))
        killed = threading.Event()

        def kill() -> None:  # on the thread reading the controller's output, right after the line
            proc.send(signal.SIGKILL)
            killed.set()

        cluster.state.when(lambda s: s.in_download and s.images_in_download >= images, kill)
        cluster.state.wait_until(lambda _: killed.is_set() or stop.is_set(), self.wait)
        where = f"after image {images} of a download"
        if not killed.is_set() and cluster.state.cancel(kill):
            where = "not in a download (none came in time)"
        status = proc.kill()  # reaps it (and kills it if the line never came)
        cluster.state.restarted()
        ready = cluster.state.counts["ready"]
        cluster.start_controller(wait=RESTART_WAIT_S)  # it goes on with the cameras there are by then
        cluster.state.wait_until(lambda s: s.counts["ready"] > ready, START_WAIT)
        took = time.monotonic() - began
        return Outcome(self.kind, "controller", began - t0, took, f"{where} (exit {status}); started again")


class DiskFull(Fault):
    """Fill the dataset's file system until writes fail, leave it full for a while, free it."""

    kind = "disk filled"

    def __init__(self, filler: Filler) -> None:
        self.filler = filler

    def inject(self, cluster: Cluster, rng: random.Random, stop: threading.Event, t0: float) -> Outcome:
        began = time.monotonic()
        filled = self.filler.fill()
        stop.wait(rng.uniform(2.0, 6.0))  # the fault itself: the disk stays full this long
        self.filler.free()
        took = time.monotonic() - began
        return Outcome(self.kind, "dataset disk", began - t0, took, f"{filled} bytes taken for {took:.1f} s")
