"""A scan's time per position, against the sum of its separate steps measured in the same run.

8 camera nodes (``--quick``: 4), each a separate process with one simulated camera standing on a
simulated turntable (in this process, like the registry and the rig), 12 MP stills with
camera-like noise (about 3 MB per JPEG; ``--resolution`` to change):

* **Steps, one after the other** (the floor's parts, per position): the move (``move_to`` of one
  step of the plan, then waiting until it has settled), ``Rig.capture_all()``, and
  ``Rig.download_all()`` of that capture. Their sum is what a scan that does one thing at a time
  takes per position.
* **Scan**: ``Rig.scan(positions=N)``, which starts the next move as soon as every camera's
  exposure is over (while the nodes still encode and store) and downloads each position while
  the table turns to the next; its time per position is its duration over ``N``. Also printed:
  what hiding only the download behind the next move would give (from the steps' own times).

Also measured: the CPU time the node processes and this process (rig, registry, turntable)
spend per position during the scan, over the machine's cores: the time a scan cannot beat on this
machine however well it overlaps its steps (here 8 simulated 12 MP cameras share 2 cores; on a
rig every Pi has its own).

A simulated camera renders the plant at each angle and resizes it to 12 MP, about 0.8 s of CPU a
view, which no real camera spends (its sensor and ISP make the frame). The scene is
deterministic, so each camera keeps the still of every angle of the plan (``stills_kept``, 37 MB
a still: about 11 GB for 8 cameras and 36 positions) and a warm-up scan, not timed, renders them
all first. What the rounds time is then what a rig does: turn, expose, encode, store, download.

Rounds alternate the two (steps first, then scan, then the other way round), each on a new
dataset, so machine noise hits both alike. The plan has 36 positions 10 degrees apart
(``--positions``; a plan plant scans commonly use), and the table turns at 30 deg/s (``--speed``,
a small stepper turntable), so a step takes 0.33 s. Printed: the median of each step, of their
sum and of the scan's time per position, and the ratio of the last two (target: at most 0.6).

Every process is stopped by its handle at the end, also on errors and Ctrl-C. Nothing leaves
127.0.0.1. Run: ``python bench/scan.py [--quick] [--rounds N] [--positions N] [--speed DEG_S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from _common import ChildLink, Children, machine_info, markdown_table
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.turntabledevice import TurntableClient, wait_settled
from plantimager.rig import CallLimits, Rig
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer

__all__ = ["main"]

HOST = "127.0.0.1"
NOISE = 12
TABLE = "table"


def camera_node(
    link: ChildLink, *, node: str, registry: str, home: str, resolution: tuple[int, int], stills_kept: int
) -> None:
    """A node with one simulated camera on the turntable, until the benchmark stops it."""
    from plantimager.camera.runner import run_node

    name = node
    stop = threading.Event()
    link.on_stop(stop.set)
    run_node(
        Path(home) / "spool",
        registry=registry,
        bind=f"tcp://{HOST}:0",
        stream_port=None,
        state_dir=Path(home) / "state",
        name=name,
        resolution=resolution,
        backend_options={
            "turntable": TABLE,
            "noise": NOISE,
            "render_size": (320, 240),
            "first_view": 3 * int(name[4:]),
            "stills_kept": stills_kept,
        },
        stop=stop,
        on_registered=lambda accepted: link.ready({"name": accepted}),
    )


def steps_round(rig: Rig, table: TurntableClient, positions: int) -> dict[str, list[float]]:
    """Move, capture, download, one after the other, at each position; seconds of each step."""
    out: dict[str, list[float]] = {"move": [], "capture": [], "download": []}
    for index in range(positions):
        t0 = time.perf_counter()
        wait_settled(table, table.move_to(360.0 * index / positions), 120)
        t1 = time.perf_counter()
        rig.capture_all()
        t2 = time.perf_counter()
        rig.download_all()
        t3 = time.perf_counter()
        out["move"].append(t1 - t0)
        out["capture"].append(t2 - t1)
        out["download"].append(t3 - t2)
    return out


def cpu_seconds(children: Children, names: list[str]) -> float:
    """CPU seconds used so far by the node processes and by this process (all their threads)."""
    return sum(children.cpu_time(name) for name in names) + time.process_time()


def scan_round(rig: Rig, positions: int, cpu: Callable[[], float]) -> tuple[float, float]:
    """One scan; seconds per position, and CPU seconds per position of every process involved."""
    c0, t0 = cpu(), time.perf_counter()
    report = rig.scan(positions=positions, turntable=TABLE)
    seconds = time.perf_counter() - t0
    used = cpu() - c0
    assert report.complete and len(report.captured) == positions, report
    return seconds / positions, used / positions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 cameras, 2 rounds")
    parser.add_argument("--cameras", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each variant (default 3)")
    parser.add_argument("--positions", type=int, default=36)
    parser.add_argument("--speed", type=float, default=30.0, help="turntable speed, deg/s")
    parser.add_argument("--resolution", default="4056x3040")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    cameras = args.cameras or (4 if args.quick else 8)
    rounds = args.rounds or (2 if args.quick else 3)
    width, height = (int(v) for v in args.resolution.lower().split("x"))
    context = zmq.Context()
    registry = DeviceRegistry(context, HOST, 0, heartbeat_interval=0.2)
    registry.start()
    server = TurntableServer(context, f"tcp://{HOST}:0", backend=DummyTurntable(), speed=args.speed)
    steps: dict[str, list[float]] = {"move": [], "capture": [], "download": []}
    per_position: list[float] = []
    cpu_per_position: list[float] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp,
            serve_in_thread(server),
            Children("process") as children,
        ):
            server.register_to_registry("turntable", TABLE, registry.url)
            for number in range(cameras):
                name = f"node{number}"
                children.start(
                    name,
                    camera_node,
                    node=name,
                    registry=registry.url,
                    home=str(Path(tmp) / name),
                    resolution=(width, height),
                    stills_kept=args.positions,
                )
            children.wait_ready(60)
            limits = CallLimits(connect=5000, call=10_000, capture=60_000, transfer=60_000)
            with Rig(registry.url, context=context, limits=limits) as rig:
                if not rig.wait_for_cameras(cameras, 60):
                    raise SystemExit(f"only {len(rig.cameras())} of {cameras} cameras came up")
                table = TurntableClient(context, server.address, timeout=5000)
                try:
                    # Not timed: every camera renders the still of each angle of the plan once and
                    # keeps it, so the rounds time what a rig does (move, expose, encode, store,
                    # download), not the simulation's rendering.
                    rig.use_dataset(Path(tmp) / "warm-up")
                    wait_settled(table, table.home(), 120)
                    rig.scan(positions=args.positions, turntable=TABLE)
                    print("warm-up scan done", file=sys.stderr)
                    for number in range(rounds):
                        order = ("steps", "scan") if number % 2 == 0 else ("scan", "steps")
                        for variant in order:
                            rig.use_dataset(Path(tmp) / f"{variant}-{number}")
                            wait_settled(table, table.home(), 120)
                            if variant == "steps":
                                for key, values in steps_round(rig, table, args.positions).items():
                                    steps[key].extend(values)
                            else:
                                names = [f"node{n}" for n in range(cameras)]
                                seconds, used = scan_round(
                                    rig, args.positions, lambda names=names: cpu_seconds(children, names)
                                )
                                per_position.append(seconds)
                                cpu_per_position.append(used)
                            print(f"round {number + 1}/{rounds} {variant} done", file=sys.stderr)
                finally:
                    table.close()
    finally:
        server.close()
        registry.stop()
        context.destroy(linger=0)

    # Per round: the mean of each step over the plan's positions (the first move is from 0 to 0,
    # as in the scan), their sum, and what a perfect overlap would give: each download hidden
    # behind the next move (the last one is not), capture and move never overlapping.
    n = args.positions
    means: dict[str, list[float]] = {key: [] for key in steps}
    sums, ideals = [], []
    for number in range(rounds):
        part = {key: values[number * n : (number + 1) * n] for key, values in steps.items()}
        for key in steps:
            means[key].append(sum(part[key]) / n)
        sums.append(sum(sum(values) for values in part.values()) / n)
        moves_after = [*part["move"][1:], 0.0]
        hidden = sum(max(m, d) for m, d in zip(moves_after, part["download"], strict=True))
        ideals.append((part["move"][0] + sum(part["capture"]) + hidden) / n)
    medians = {key: statistics.median(values) for key, values in means.items()}
    floor, ideal, scan = statistics.median(sums), statistics.median(ideals), statistics.median(per_position)
    cores = os.cpu_count() or 1
    cpu_bound = statistics.median(cpu_per_position) / cores
    rows = [
        ["move (until settled)", f"{medians['move']:.3f}", ""],
        ["capture_all", f"{medians['capture']:.3f}", ""],
        ["download_all", f"{medians['download']:.3f}", ""],
        ["sum of the steps (floor)", f"{floor:.3f}", "1.00x"],
        ["download hidden behind the move only", f"{ideal:.3f}", f"{ideal / floor:.2f}x"],
        ["scan, per position", f"{scan:.3f}", f"{scan / floor:.2f}x"],
        [f"scan's CPU time per position / {cores} cores", f"{cpu_bound:.3f}", f"{cpu_bound / floor:.2f}x"],
    ]
    extra = {"cameras": str(cameras), "positions": str(n), "speed": f"{args.speed:g} deg/s"}
    print(machine_info(extra))
    print(f"{cameras} cameras at {width}x{height}, {n} positions, {rounds} rounds; medians, seconds:")
    print(markdown_table(["step", "s per position", "ratio"], rows))
    print(
        f"scan / sum of the steps: {scan / floor:.2f} "
        f"(target <= 0.6; download overlap only: {ideal / floor:.2f}; "
        f"the scan's CPU over {cores} cores: {cpu_bound / floor:.2f}; "
        f"scan / its CPU bound: {scan / cpu_bound:.2f})"
    )
    if args.json is not None:
        document = {
            "medians": medians,
            "floor": floor,
            "ideal": ideal,
            "scan": scan,
            "ratio": scan / floor,
            "cpu_bound": cpu_bound,
        }
        args.json.write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
