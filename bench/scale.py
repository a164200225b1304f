"""Controller cost at scale: rigs of 8, 16, 32 and 64 camera nodes, and a leak check over 200 captures.

For each size, N camera node processes (one dummy camera each, 64x64 images, so that what is
measured is the controller's cost per capture and per node, not the bytes) and a device registry
in its own process; the controller (a :class:`plantimager.rig.Rig`) is this process, where nothing
else runs. A round is one ``capture_all()`` followed by one ``download_all()``. Per size:

* the skew of the captures (ms, median and p99);
* capture to durable: from calling ``capture_all()`` until ``download_all()`` returned, every image
  then fsynced into the dataset, recorded in its ledger and released on its node (ms, median, p90);
* controller CPU seconds per capture (this process, user + system), and per node;
* the controller's resident memory, threads (all of the process's, ZeroMQ's included), open
  descriptors and sockets after the rounds.

Floor, measured in the same rounds: raw pyzmq, one REQ socket per node from one thread, sending each
node a ping and polling for every answer (the least a controller must do per capture: one message
to every node and its answer), its time and its CPU per round. Growth: the CPU per capture and per
node at each size over that at the smallest size (at most linear in nodes when it stays near 1).

Leak check: on one rig (``--leak-nodes``, 16 by default) ``--leak-captures`` rounds (200), the
threads, descriptors and sockets of this process printed every quarter; they must not grow with
the number of captures.

Every process is stopped by its handle at the end, also on errors and Ctrl-C; nothing leaves
127.0.0.1. Run: ``python bench/scale.py [--quick] [--sizes 8,16,32,64] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from _common import ChildLink, Children, machine_info, markdown_table
from capture import camera_node
from plantimager.commons.errors import RigError
from plantimager.rig import CallLimits, Rig

__all__ = ["main"]

HOST = "127.0.0.1"
RESOLUTION = (64, 64)
#: The ping the floor sends, as our RPC clients send it (any node answers it).
PING = json.dumps({"event": "METHOD_CALL", "method": "ping", "params": {"args": [], "kwargs": {}}}).encode()


# -- children --------------------------------------------------------------------------------------
def registry_child(link: ChildLink) -> None:
    """A device registry on 127.0.0.1 (port picked by the system) until the benchmark says stop."""
    from plantimager.commons.deviceregistry import DeviceRegistry

    context = zmq.Context()
    registry = DeviceRegistry(context, HOST, 0)
    registry.start()
    try:
        link.ready({"url": registry.url})
        link.stopping.wait()
    finally:
        registry.stop()
        context.destroy(linger=0)


# -- what this process holds -----------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU seconds of this process so far, user + system, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def held() -> dict[str, int]:
    """Resident memory (bytes), OS threads, open descriptors and sockets of this process."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {line.split(":")[0]: line.split(":")[1].split() for line in status if ":" in line}
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used
            continue
    return {
        "rss": int(fields["VmRSS"][0]) * 1024,
        "threads": int(fields["Threads"][0]),
        "descriptors": len(targets),
        "sockets": sum(t.startswith("socket:") for t in targets),
    }


# -- the floor -------------------------------------------------------------------------------------
class RawPings:
    """One REQ socket per node, from one thread: a ping to every node, then every answer."""

    def __init__(self, addresses: list[str]) -> None:
        self.context = zmq.Context()  # its own: closed for good before the rig's sockets are counted
        self.sockets = []
        self.poller = zmq.Poller()
        for address in addresses:
            sock = self.context.socket(zmq.REQ)
            sock.linger = 0
            sock.connect(address)
            self.sockets.append(sock)
            self.poller.register(sock, zmq.POLLIN)

    def round(self, timeout_ms: int = 10_000) -> None:
        """Ping every node and wait for every answer (bounded)."""
        for sock in self.sockets:
            sock.send(PING)
        waiting = set(self.sockets)
        deadline = time.monotonic() + timeout_ms / 1000
        while waiting:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                raise RuntimeError(f"{len(waiting)} node(s) did not answer a raw ping")
            for sock, _ in self.poller.poll(left):
                sock.recv()
                waiting.discard(sock)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.context.term()  # returns once every socket and connection is gone


# -- one rig ---------------------------------------------------------------------------------------
class Rigging:
    """A registry, ``nodes`` camera node processes and a rig on them, all stopped on exit."""

    def __init__(self, nodes: int, folder: Path) -> None:
        self.size = nodes
        self.folder = folder
        self.children = Children("process")
        self.context = zmq.Context()
        self.rig: Rig | None = None
        self.addresses: list[str] = []

    def __enter__(self) -> Rigging:
        try:
            self.children.start("registry", registry_child)
            url = self.children.wait_ready(60)["registry"]["url"]
            for i in range(self.size):
                name = f"n{i:02d}"
                self.children.start(
                    name,
                    camera_node,
                    home=str(self.folder / name),
                    node_name=name,
                    registry=url,
                    resolution=RESOLUTION,
                )
            self.children.wait_ready(60 + 3 * self.size)
            limits = CallLimits(call=30_000)  # 64 nodes share 2 CPUs here: short calls may queue
            self.rig = Rig(url, dataset=self.folder / "dataset", context=self.context, limits=limits).start()
            if not self.rig.wait_for_cameras(self.size, 60 + self.size):
                raise RuntimeError(f"only {len(self.rig.cameras())} of {self.size} cameras came up")
            self.addresses = [node.address for node in self.rig.nodes()]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.rig is not None:
            self.rig.close()
        self.children.stop_all()
        self.context.destroy(linger=0)

    def capture_round(self) -> tuple[float, float]:
        """One capture and its download; returns (skew ms, capture to durable s)."""
        assert self.rig is not None
        started = time.perf_counter()
        try:
            record = self.rig.capture_all()
        except RigError as exc:
            raise RuntimeError(f"a capture failed: {exc}") from exc
        report = self.rig.download_all()
        if report.owed or len(report.files) != self.size:
            raise RuntimeError(f"a download left {report.owed} image(s) owed")
        assert record.skew_ms is not None
        return record.skew_ms, time.perf_counter() - started


def measure_size(nodes: int, rounds: int) -> dict[str, Any]:
    """The figures of one rig size (see the module documentation)."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, Rigging(nodes, Path(tmp)) as rigging:
        floor = RawPings(rigging.addresses)
        try:
            for _ in range(3):  # warm-up: pools at their working size, sockets connected
                rigging.capture_round()
                floor.round()
            skews, durable, ours_cpu, raw_s, raw_cpu = [], [], [], [], []
            for _ in range(rounds):
                cpu = cpu_seconds()
                skew, seconds = rigging.capture_round()
                ours_cpu.append(cpu_seconds() - cpu)
                skews.append(skew)
                durable.append(seconds)
                cpu, started = cpu_seconds(), time.perf_counter()
                floor.round()
                raw_s.append(time.perf_counter() - started)
                raw_cpu.append(cpu_seconds() - cpu)
        finally:
            floor.close()
        return {
            "nodes": nodes,
            "skew": (statistics.median(skews), float(np.percentile(skews, 99))),
            "durable": (statistics.median(durable), float(np.percentile(durable, 90))),
            "cpu": statistics.median(ours_cpu),
            "raw_s": statistics.median(raw_s),
            "raw_cpu": statistics.median(raw_cpu),
            "held": held(),
        }


def leak_check(nodes: int, captures: int) -> list[list[str]]:
    """Threads, descriptors and sockets every quarter of ``captures`` rounds on one rig; the rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-leak-") as tmp, Rigging(nodes, Path(tmp)) as rigging:
        for _ in range(3):
            rigging.capture_round()
        marks = {captures * k // 4 for k in range(1, 5)}
        for done in range(1, captures + 1):
            rigging.capture_round()
            if done in marks:
                now = held()
                python = threading.active_count()
                rows.append(
                    [
                        str(done),
                        str(now["threads"]),
                        str(python),
                        str(now["descriptors"]),
                        str(now["sockets"]),
                        f"{now['rss'] / 1e6:.0f}",
                    ]
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 4 and 8, 10 rounds, leak check of 40")
    parser.add_argument("--sizes", default=None, help="rig sizes, comma-separated (default 8,16,32,64)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per size (default 30)")
    parser.add_argument("--leak-nodes", type=int, default=16, help="nodes of the leak check")
    parser.add_argument("--leak-captures", type=int, default=None, help="captures of the leak check (200)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("4,8" if args.quick else "8,16,32,64")).split(",")]
    rounds = args.rounds or (10 if args.quick else 30)
    leak_captures = args.leak_captures or (40 if args.quick else 200)
    leak_nodes = min(args.leak_nodes, 8) if args.quick else args.leak_nodes
    info = machine_info({"pyzmq": zmq.__version__})
    print("# Rig benchmark: controller cost at scale\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()), "\n")
    results = []
    try:
        for nodes in sizes:
            started = time.monotonic()
            results.append(measure_size(nodes, rounds))
            print(f"- {nodes} nodes measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
        started = time.monotonic()
        leaks = leak_check(leak_nodes, leak_captures)
        print(f"- leak check measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    base = results[0]["cpu"] / results[0]["nodes"]
    rows = []
    for r in results:
        n, per_node = r["nodes"], r["cpu"] / r["nodes"]
        rows.append(
            [
                str(n),
                f"{r['skew'][0]:.3f} / {r['skew'][1]:.3f}",
                f"{r['durable'][0] * 1e3:.1f} / {r['durable'][1] * 1e3:.1f}",
                f"{r['raw_s'] * 1e3:.2f}",
                f"{r['cpu'] * 1e3:.1f} ({per_node * 1e3:.2f} per node)",
                f"{r['raw_cpu'] * 1e3:.2f} ({r['cpu'] / r['raw_cpu']:.0f}x)" if r["raw_cpu"] else "-",
                f"{per_node / base:.2f}x",
                f"{r['held']['rss'] / 1e6:.0f}",
                str(r["held"]["threads"]),
                f"{r['held']['descriptors']} / {r['held']['sockets']}",
            ]
        )
    header = [
        "nodes",
        "skew ms (median / p99)",
        "capture to durable ms (median / p90)",
        "floor: raw ping of every node, ms",
        "controller CPU ms per capture",
        "floor CPU ms per round (ours / floor)",
        "CPU per node vs smallest rig",
        "controller RSS MB",
        "threads",
        "descriptors / sockets",
    ]
    print(f"{rounds} rounds of capture_all + download_all per size (medians):\n")
    print(markdown_table(header, rows))
    print(f"\nLeak check: {leak_nodes} nodes, {leak_captures} captures (each downloaded):\n")
    print(
        markdown_table(
            ["captures", "OS threads", "Python threads", "descriptors", "sockets", "RSS MB"], leaks
        )
    )
    steady = len({tuple(row[2:5]) for row in leaks}) == 1
    print(
        f"\nPython threads, descriptors and sockets {'do not grow' if steady else 'CHANGE'} with the "
        "captures (the OS count also holds threads still ending as it is read)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
