"""Running a soak from start to verdict: :func:`run_soak`.

1. Mount a tmpfs of a fixed size for the dataset; start the registry, the nodes and the controller.
2. Let two lanes of faults (see :mod:`soak.injector`) run for the configured time while the
   controller captures and downloads; watch that it keeps talking (a silent controller is a hang).
3. Heal everything, stop the controller, and run it again to drain: download until nothing is owed.
4. Stop every process, audit the dataset and the spools (:mod:`soak.audit`), unmount, and return
   the :class:`SoakResult` (its :meth:`~SoakResult.table` is what the soak prints).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .audit import Audit, audit
from .cluster import START_WAIT, Cluster
from .controller import LIMITS
from .disk import Filler, Tmpfs
from .faults import ControllerKill, DiskFull, NodeHang, NodeKill, Outcome, RegistryRestart
from .injector import Lane
from .report import machine, render

__all__ = ["SoakConfig", "SoakResult", "run_soak"]

#: A controller silent for this long while it should be working is taken as hung, seconds.
STALL_S = 60.0
#: Longest wait for the nodes to exit once all are told to stop at once, seconds.
NODES_STOP_S = 30.0


@dataclass(frozen=True)
class SoakConfig:
    """What a soak runs.

    Attributes
    ----------
    nodes : int
        Camera node processes (one dummy camera each).
    seconds : float
        How long faults are injected.
    seed : int
        Seed of the fault injector.
    disk_mb : int
        Size of the dataset's tmpfs, MiB.
    resolution : str
        Still resolution of the cameras.
    max_faults : int
        At most this many faults per lane.
    gap : (float, float)
        Bounds of the pause before each fault, seconds.
    drain : float
        Longest drain, seconds (what the controller never heard about waits the rig's grace).
    work : pathlib.Path, optional
        Folder for logs, spools and the mount point (a new temporary folder by default, kept).
    """

    nodes: int = 16
    seconds: float = 45.0
    seed: int = 1
    disk_mb: int = 64
    resolution: str = "160x120"
    max_faults: int = 1000
    gap: tuple[float, float] = (1.0, 4.0)
    drain: float = LIMITS.unknown_result / 1000 + 30.0
    work: Path | None = None


@dataclass
class SoakResult:
    """What a soak did and found."""

    config: SoakConfig
    work: Path
    audit: Audit | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sample_errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cycles: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or left owed, and no crash or hang found."""
        return self.audit is not None and self.audit.ok and not self.findings

    def recoveries(self, key: str) -> list[float | None]:
        """The ``key`` figure (``registry_s``, ``rig_s``) of every registry restart."""
        return [o.measured.get(key) for o in self.outcomes if o.measured and key in o.measured]

    def table(self) -> str:
        """The soak's report, as a Markdown table and its findings."""
        return render(self)


def run_soak(config: SoakConfig, say: Callable[[str], None] = print) -> SoakResult:
    """Run one soak (see the module documentation); ``say`` prints its progress.

    Raises
    ------
    PermissionError
        If the tmpfs cannot be mounted.
    """
    work = Path(config.work) if config.work else Path(tempfile.mkdtemp(prefix="plantimager-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    result = SoakResult(config, work)
    say(f"soak: seed {config.seed}, {config.nodes} nodes, {config.seconds:g} s of faults, in {work}")
    say(f"soak: machine {machine()}")
    started = time.monotonic()
    disk = Tmpfs(work / "disk", config.disk_mb).mount()
    try:
        cluster = Cluster(work, disk.where / "dataset", config.nodes, config.resolution)
        try:
            _run(cluster, disk, config, result, say, started)
        finally:
            statuses = cluster.close()
            result.findings += [
                f"{name} did not stop on SIGTERM (killed; its stacks are in its log)"
                for name, code in statuses.items()
                if code is not None and code < 0
            ]
    finally:
        disk.unmount()
    result.timings["total_s"] = time.monotonic() - started
    return result


def _run(
    cluster: Cluster,
    disk: Tmpfs,
    config: SoakConfig,
    result: SoakResult,
    say: Callable[[str], None],
    t0: float,
) -> None:
    cluster.start_registry()
    cluster.start_nodes()
    seen = cluster.registered(set(cluster.nodes), START_WAIT)
    if seen is None:
        raise RuntimeError("not every node registered; see the logs in " + str(cluster.logs))
    cluster.capture_seconds = config.seconds + 5 * STALL_S
    cluster.start_controller(wait=START_WAIT)
    if not cluster.state.wait_until(lambda s: s.counts["ready"] >= 1, START_WAIT):
        raise RuntimeError("the controller did not start; see " + str(cluster.logs / "controller.log"))
    result.timings["start_s"] = time.monotonic() - t0
    say(f"soak: {config.nodes} nodes and the controller up after {result.timings['start_s']:.1f} s")

    _chaos(cluster, disk, config, result, say)

    say("soak: healing every fault, stopping the controller")
    cluster.heal()
    assert cluster.controller is not None
    code = cluster.controller.stop(STALL_S)
    if code is not None and code < 0:
        result.findings.append("the controller did not stop on SIGTERM within a minute (killed): a hang")
    if cluster.registered(set(cluster.nodes), START_WAIT) is None:
        result.findings.append("not every node registered again after the faults")
    drain_started = time.monotonic()
    say(f"soak: draining (at most {config.drain:g} s)")
    cluster.start_controller(drain=config.drain, wait=START_WAIT)
    code = cluster.controller.wait(config.drain + START_WAIT + STALL_S)
    result.timings["drain_s"] = time.monotonic() - drain_started
    drained = cluster.state.drained or {}
    if code != 0:
        result.findings.append(f"the drain did not finish (exit {code}): {drained}")
    for proc in cluster.nodes.values():
        proc.terminate()  # all at once, on this machine's few CPUs: each is given NODES_STOP_S
    for name, proc in cluster.nodes.items():
        code = proc.stop(NODES_STOP_S)
        if code not in (0, None):
            result.findings.append(f"{name} did not stop cleanly on SIGTERM (exit {code}; stacks in its log)")
    state = cluster.state
    result.cycles.update(state.counts)
    for event in state.errors:
        key = f"{event.get('op')}: {event.get('kind')}"
        result.errors[key] += 1
        text = f"{key}: {event.get('text')}"
        if result.errors[key] <= 2 and text not in result.sample_errors:  # a few of each kind
            result.sample_errors.append(text)
    result.findings += cluster.controller.errors
    for event in state.unexpected:
        result.findings.append(
            f"controller raised {event.get('kind')} in {event.get('op')}: {event.get('text')}"
        )
    result.audit = audit(
        cluster.dataset,
        {name: proc.log for name, proc in cluster.nodes.items()},
        {name: cluster.spool_of(name) for name in cluster.nodes},
    )
    shutil.copytree(cluster.dataset, cluster.work / "dataset", dirs_exist_ok=True)  # kept for a post-mortem


def _chaos(
    cluster: Cluster, disk: Tmpfs, config: SoakConfig, result: SoakResult, say: Callable[[str], None]
) -> None:
    """Inject faults for ``config.seconds`` while watching that the controller keeps going."""
    stop = threading.Event()
    began = time.monotonic()
    deadline = began + config.seconds
    lock = threading.Lock()

    def report(outcome: Outcome) -> None:
        with lock:
            result.outcomes.append(outcome)
        say(f"[{outcome.at:7.1f} s] {outcome.kind}: {outcome.target}: {outcome.detail}")

    common = {"seed": config.seed, "t0": began, "deadline": deadline, "stop": stop, "report": report}
    lanes = [
        Lane("nodes", [(NodeKill(), 1.0)], cluster, max_faults=config.max_faults, gap=config.gap, **common),
        Lane(
            "system",
            [
                (NodeHang(), 1.0),
                (RegistryRestart(), 1.0),
                (ControllerKill(), 1.0),
                (DiskFull(Filler(disk.where)), 1.0),
            ],
            cluster,
            max_faults=config.max_faults,
            gap=config.gap,
            **common,
        ),
    ]
    for lane in lanes:
        lane.start()
    # After the deadline the lanes end by themselves once each has injected one fault of each kind.
    hard = deadline + START_WAIT
    try:
        while time.monotonic() < hard and any(lane.is_alive() for lane in lanes):
            quiet = time.monotonic() - cluster.state.last_event
            if quiet > STALL_S and cluster.controller is not None and cluster.controller.alive:
                result.findings.append(
                    f"the controller said nothing for {quiet:.0f} s: a hang (stacks in its log)"
                )
                cluster.controller.send(signal.SIGUSR1)  # its stacks go to its log
                break
            with cluster.state.cond:
                cluster.state.cond.wait(min(1.0, max(0.0, hard - time.monotonic())))
    finally:
        stop.set()
        for lane in lanes:
            lane.join(START_WAIT)
            result.findings += lane.errors
    result.timings["chaos_s"] = time.monotonic() - began
