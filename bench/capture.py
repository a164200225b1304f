"""Synchronised capture and download of a rig, each beside a floor measured in the same run.

For 8 and 16 camera nodes (``--quick``: 4 and 8), each a separate process with one dummy camera,
registered with a registry in this process and driven by a :class:`plantimager.rig.Rig`:

1. **Capture skew.** ``Rig.capture_all()`` sends every node the same instant ``t0`` a few ms ahead,
   in parallel; the skew of a capture is its latest minus its earliest recorded capture time. Floors,
   measured in the same rounds: PEPI's sequential trigger, ``start_capture(at=None)`` sent to the
   nodes one after another, (a) waiting for each reply before the next node (a request/reply
   client), and (b) fire-and-forget (each request handed to its own thread as the loop goes, like
   PEPI's oneway calls). Median and p99 over ``--captures`` captures (at least 30). Target: p99
   skew at most 1 ms with 16 nodes. The clock offsets the nodes reported with the captures (from
   chrony, none where it does not run) are printed below the table. The nodes run with their
   default settle time (they encode and store a few ms after ``t0``), and again with none
   (``settle_ms=0``: they encode and store as soon as they have fired), and again with firing
   threads under ordinary scheduling instead of the real-time policy (``fire_priority=0``), to
   show what each buys.
2. **Download of one capture.** ``Rig.download_all()`` after a 12 MP capture (not timed): fetch
   every image, verify its size and checksum, write it durably into the dataset, record it, release
   it on the node. Twice: with the plain dummy views (about 0.5 MB per JPEG), and with camera-like
   noise (``noise=12``, about 3 MB per JPEG, like a 12 MP Raspberry Pi HQ camera). Three floors,
   each fetching the same bytes with raw pyzmq REQ/REP, zero-copy, from as many server processes
   with the same number of transfers at once (4): (a) the transfer alone; (b) keeping each image in
   a new file, not fsynced (the least any downloader that keeps the images must do); (c) the same,
   each file fsynced, and one fsync of the folder at the end (the least a downloader that keeps
   them durably must do); and (d) that durable save alone, with no transfer (what the disk
   takes). Targets: at most 1.3x the durable floor (c) for the 0.5 MB images, 1.1x for the 3 MB
   ones.
   The cost of each step of a download, measured alone on one image, is printed below the table,
   and so is the CPU time spent per download, ours beside the floors': this process's, and that of
   the processes serving it meanwhile (the camera nodes, or the raw servers). On a machine with
   few CPUs shared with every node, that is what sets the small images' figure.

On this machine every simulated node shares the same few CPUs, which a real rig does not: the skew
rounds use 64x64 images (``--skew-resolution``) so that the CPU a node spends after firing stays
small.

The variants are timed round by round in rotating order, so machine noise hits them alike. Every
process is stopped by its handle at the end, also on errors and Ctrl-C. Nothing leaves 127.0.0.1.

Run: ``python bench/capture.py [--quick] [--captures N] [--downloads N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zmq

from _common import ChildLink, Children, machine_info, markdown_table
from plantimager.commons.cameradevice import CameraNode
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.RPC import RPCClient
from plantimager.rig import CallLimits, Rig
from plantimager.rig.storage import fsync_dir, link_new, write_durably

__all__ = ["main"]

HOST = "127.0.0.1"
DOWNLOAD_RESOLUTION = (4056, 3040)
#: Noise of the dummy cameras that gives camera-like JPEG sizes (about 3 MB at 12 MP).
NOISE = 12
JOBS = 4
MB = 1_000_000


@RPCClient.register_interface(CameraNode)
class NodeClient(CameraNode, RPCClient):
    """A direct client of a node, for the sequential floors."""


# -- children --------------------------------------------------------------------------------------
def camera_node(
    link: ChildLink,
    *,
    home: str,
    node_name: str,
    registry: str,
    resolution: tuple[int, int],
    settle_ms: float | None = None,
    noise: int = 0,
    fire_priority: int | None = None,
) -> None:
    """A camera node with one dummy camera, registered as ``node_name``; stops when the benchmark says.

    ``settle_ms`` and ``fire_priority`` None keep the node's defaults; ``noise`` is the dummy
    camera's (0: plain views).
    """
    from plantimager.camera.capture import DEFAULT_SETTLE_MS, FIRE_PRIORITY
    from plantimager.camera.runner import run_node

    def registered(accepted: str) -> None:
        link.ready({"name": accepted})

    run_node(
        Path(home) / "spool",
        backend="dummy",
        cameras=1,
        registry=registry,
        bind=f"tcp://{HOST}:0",
        stream_port=None,
        state_dir=Path(home) / "state",
        name=node_name,
        resolution=resolution,
        backend_options={"noise": noise},
        settle_ms=DEFAULT_SETTLE_MS if settle_ms is None else settle_ms,
        fire_priority=FIRE_PRIORITY if fire_priority is None else fire_priority,
        stop=link.stopping,
        on_registered=registered,
    )


def raw_server(link: ChildLink, *, payload: bytes) -> None:
    """Raw pyzmq REP server answering every request with ``[header, payload]``, zero-copy."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.linger = 0
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    header = json.dumps({"size": len(payload)}).encode()
    frame = zmq.Frame(payload)
    link.ready({"address": f"tcp://{HOST}:{port}"})
    try:
        while not link.stopping.is_set():
            if sock.poll(100):
                sock.recv()
                sock.send_multipart([header, frame], copy=False)
    finally:
        sock.close()
        context.term()


# -- measurements ----------------------------------------------------------------------------------
def p99(values: list[float]) -> float:
    """The 99th percentile of ``values``."""
    return float(np.percentile(values, 99))


def sequential_awaited(clients: list[NodeClient], code: str) -> float:
    """PEPI's loop with request/reply: each node fires when its request arrives; returns the skew (ms)."""
    times = []
    for client in clients:
        times.extend(m["captured_ns"] for m in client.start_capture(code, None)["cameras"])
    return (max(times) - min(times)) / 1e6


def sequential_oneway(clients: list[NodeClient], pool: ThreadPoolExecutor, code: str) -> float:
    """PEPI's loop of oneway calls: requests leave one after another, no reply awaited in between."""
    futures = [pool.submit(client.start_capture, code, None) for client in clients]
    times = [m["captured_ns"] for f in futures for m in f.result()["cameras"]]
    return (max(times) - min(times)) / 1e6


def release_all(clients: list[NodeClient], code: str) -> None:
    """Let every node delete what a floor round stored under ``code``."""
    for client in clients:
        client.release(code)


def raw_fetch(
    addresses: list[str],
    sockets: dict[str, queue.SimpleQueue[zmq.Socket]],
    jobs: int,
    save: Path | None = None,
    *,
    durable: bool = True,
) -> int:
    """Fetch one payload from every raw server, ``jobs`` at a time; returns the bytes received.

    With ``save``, each payload is also kept, as plainly as can be: written to a new file there (a
    downloader keeps every image, so never over an earlier one), no verification, no bookkeeping.
    With ``durable`` too, each file is fsynced, and the folder fsynced once at the end so that the
    new names are durable as well.
    """
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for address in addresses:
        todo.put(address)
    received = [0] * jobs

    def worker(slot: int) -> None:
        while True:
            try:
                address = todo.get_nowait()
            except queue.Empty:
                return
            sock = sockets[address].get()
            sock.send(b"get")
            frames = sock.recv_multipart(copy=False)
            received[slot] += len(frames[1].buffer)
            sockets[address].put(sock)
            if save is not None:
                keep(save / f"{address.rsplit(':', 1)[1]}-{next(_SAVED)}", frames[1].buffer, fsync=durable)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if save is not None and durable:
        fsync_dir(save)
    return sum(received)


def disk_only(payloads: list[bytes], save: Path, jobs: int) -> None:
    """Keep ``payloads`` durably, ``jobs`` at a time, with no transfer: the disk's own floor.

    Each is written to a new file and fsynced, and the folder fsynced once at the end, as
    :func:`raw_fetch` does with ``save`` and ``durable``.
    """
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda payload: keep(save / f"disk-{next(_SAVED)}", payload, fsync=True), payloads))
    fsync_dir(save)


def keep(path: Path, data: Any, *, fsync: bool) -> None:
    """Write ``data`` to the new file ``path`` with one plain write; fsync it if asked."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


_SAVED = itertools.count()
#: Rig size -> every node's clock offset reported with the captures of the skew rounds (ms or None).
CLOCKS: dict[int, list[float | None]] = {}


def bench_rig(
    nodes: int,
    folder: Path,
    *,
    captures: int,
    downloads: int,
    resolution: tuple[int, int],
    settle_ms: float | None = None,
    noise: int = 0,
    fire_priority: int | None = None,
    steps: list[list[str]] | None = None,
) -> list[list[str]]:
    """The figures for one rig (skew rounds if ``captures``, a download figure if ``downloads``).

    With ``steps``, the cost of each step of a download, measured alone, is added to it.
    """
    context = zmq.Context()
    registry = DeviceRegistry(context, HOST, 0)
    registry.start()
    try:
        with Children("process") as children:
            for i in range(nodes):
                name = f"bench{i:02d}"
                children.start(
                    name,
                    camera_node,
                    home=str(folder / name),
                    node_name=name,
                    registry=registry.url,
                    resolution=resolution,
                    settle_ms=settle_ms,
                    noise=noise,
                    fire_priority=fire_priority,
                )
            children.wait_ready(120)
            rows: list[list[str]] = []
            # Configuring 12 MP on many nodes sharing 2 CPUs takes a while: allow 30 s per call.
            limits = CallLimits(call=30_000)
            with Rig(registry.url, dataset=folder / "skew", context=context, limits=limits) as rig:
                if not rig.wait_for_cameras(nodes, 30):
                    raise RuntimeError(f"only {len(rig.cameras())} of {nodes} cameras came up")
                if captures:
                    rows += bench_skew(rig, context, captures, settle_ms, fire_priority)
                    rig.download_all()  # what the skew rounds left on the nodes (not timed)
                if downloads:
                    target = "<= 1.1x" if noise else "<= 1.3x"
                    rows += bench_download(rig, children, context, folder, downloads, target, steps)
            return rows
    finally:
        registry.stop()
        context.destroy(linger=0)


def bench_skew(
    rig: Rig, context: zmq.Context, captures: int, settle_ms: float | None, fire_priority: int | None = None
) -> list[list[str]]:
    """Capture skew of ``capture_all`` and of both sequential floors, round by round; the table rows."""
    nodes = rig.nodes()
    clients = [NodeClient(context, node.address, timeout=5000) for node in nodes]
    pool = ThreadPoolExecutor(max_workers=len(clients))
    ours: list[float] = []
    leads: list[float] = []
    awaited: list[float] = []
    oneway: list[float] = []
    counter = iter(range(10**9))
    try:
        variants = {
            "ours": lambda: _ours(rig, ours, leads, CLOCKS.setdefault(len(nodes), [])),
            "awaited": lambda: _floor(awaited, sequential_awaited, clients, next(counter)),
            "oneway": lambda: _floor(
                oneway, lambda c, code: sequential_oneway(c, pool, code), clients, next(counter)
            ),
        }
        names = list(variants)
        for round_no in range(captures + 3):  # three warm-up rounds, dropped
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                variants[name]()
            if round_no == 2:
                for series in (ours, leads, awaited, oneway):
                    series.clear()
    finally:
        pool.shutdown()
        for client in clients:
            client.close()
    n = len(nodes)
    label = f"capture skew, {n} cameras (ms, median / p99 over {len(ours)})"
    label += ", nodes settling 0 ms (storing at once)" if settle_ms == 0 else ""
    label += ", firing threads under ordinary scheduling" if fire_priority == 0 else ""
    lead = f"capture_all (lead {statistics.median(leads):.1f} ms)"
    rows = []
    for floor_name, floor in (
        ("sequential, each reply awaited", awaited),
        ("sequential, fire and forget", oneway),
    ):
        ratio = (
            statistics.median(ours) / statistics.median(floor)
            if statistics.median(floor) > 0
            else float("nan")
        )
        rows.append(
            [
                label,
                f"{lead}: {statistics.median(ours):.3f} / {p99(ours):.3f}",
                f"{floor_name}: {statistics.median(floor):.3f} / {p99(floor):.3f}",
                f"{ratio:.3f}x (p99 {p99(ours) / p99(floor):.3f}x)",
                _met(p99(ours) <= 1.0, "p99 <= 1 ms")
                if n >= 16 and settle_ms != 0 and fire_priority != 0
                else "",
            ]
        )
    return rows


def _met(met: bool, target: str) -> str:
    """A target, marked met or not."""
    return f"{target}: {'met' if met else 'NOT met'}"


def _ours(rig: Rig, skews: list[float], leads: list[float], clocks: list[float | None]) -> None:
    record = rig.capture_all()
    assert record.skew_ms is not None
    skews.append(record.skew_ms)
    leads.append(record.lead_ms)
    clocks.extend(record.clock_offsets_ms.values())


#: The downloading process's CPU time per download (median), ours and the floors', per rig.
CPU_LINES: list[str] = []


def clock_lines() -> list[str]:
    """What the nodes said of their clocks with the captures of the skew rounds, per rig size."""
    lines = []
    for nodes, offsets in sorted(CLOCKS.items()):
        known = [o for o in offsets if o is not None]
        if not known:
            text = "unknown on every node (chrony is not running here)"
        else:
            text = f"{min(known):+.3f} to {max(known):+.3f} ms ({len(offsets) - len(known)} unknown)"
        lines.append(f"- {nodes} nodes: clock offsets reported with the captures: {text}")
    return lines


def _floor(series: list[float], trigger: Any, clients: list[NodeClient], number: int) -> None:
    code = f"bench-seq-{number}"
    series.append(trigger(clients, code))
    release_all(clients, code)


def bench_download(
    rig: Rig,
    children: Children,
    context: zmq.Context,
    folder: Path,
    downloads: int,
    target: str,
    steps: list[list[str]] | None = None,
) -> list[list[str]]:
    """Time to download one 12 MP capture beside raw pyzmq moving the same bytes; the table rows."""
    rig.use_dataset(folder / "download")
    rig.configure_all(resolution=DOWNLOAD_RESOLUTION)
    record = rig.capture_all()  # warm-up, and the bytes the raw servers will send
    rig.download_all(jobs=JOBS)
    payloads = [(rig.dataset.root / shot.file).read_bytes() for shot in record.shots]
    if steps is not None and not steps:  # once is enough
        steps += step_costs(payloads[0], folder / "steps", rig.nodes()[0].address, context)
    for i, payload in enumerate(payloads):
        children.start(f"raw{i:02d}", raw_server, payload=payload)
    addresses = [info["address"] for name, info in children.wait_ready(120).items() if name.startswith("raw")]
    sockets: dict[str, queue.SimpleQueue[zmq.Socket]] = {}
    for address in addresses:
        sock = context.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(address)
        sockets[address] = queue.SimpleQueue()
        sockets[address].put(sock)
    raw_fetch(addresses, sockets, JOBS)  # warm-up
    series: dict[str, list[float]] = {
        name: [] for name in ("ours", "raw", "raw+write", "raw+durable", "disk")
    }
    sizes: list[int] = []
    save = folder / "raw-save"
    save.mkdir()
    names = list(series)
    cpu: dict[str, list[float]] = {name: [] for name in names}  # this process's CPU seconds
    # The CPU seconds the servers (the camera nodes, or the raw servers) spent meanwhile.
    served: dict[str, list[float]] = {name: [] for name in names}
    nodes = [name for name in children.names() if name.startswith("bench")]
    raws = [name for name in children.names() if name.startswith("raw")]
    try:
        for round_no in range(downloads):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                if name == "ours":
                    rig.capture_all()  # not timed, nor its CPU counted
                servers = {"ours": nodes, "disk": []}.get(name, raws)  # the raw floors: raw servers
                servers_before = sum(children.cpu_time(server) for server in servers)
                cpu_started = time.process_time()
                if name == "ours":
                    started = time.perf_counter()
                    report = rig.download_all(jobs=JOBS)
                    series[name].append(time.perf_counter() - started)
                    sizes.append(report.bytes)
                elif name == "disk":
                    started = time.perf_counter()
                    disk_only(payloads, save, JOBS)
                    series[name].append(time.perf_counter() - started)
                else:
                    started = time.perf_counter()
                    raw_fetch(
                        addresses,
                        sockets,
                        JOBS,
                        None if name == "raw" else save,
                        durable=name == "raw+durable",
                    )
                    series[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
                served[name].append(sum(children.cpu_time(server) for server in servers) - servers_before)
    finally:
        for pool in sockets.values():
            while not pool.empty():
                pool.get().close()
    total = statistics.median(sizes)
    raw_total = sum(len(p) for p in payloads)

    def spent(name: str) -> str:
        mine, theirs = statistics.median(cpu[name]), statistics.median(served[name])
        return f"{mine * 1e3:.1f} ms + {theirs * 1e3:.1f} ms in the servers"

    CPU_LINES.append(
        f"- {len(payloads)} x {total / len(payloads) / MB:.2f} MB: download_all {spent('ours')} "
        f"(the nodes); (c) raw pyzmq kept durably {spent('raw+durable')}; (a) raw pyzmq {spent('raw')}"
    )
    ours = series["ours"]
    mine = statistics.median(ours)
    label = f"download one capture, {len(payloads)} x {total / len(payloads) / MB:.2f} MB (ms, median / p90)"
    ours_text = (
        f"download_all: {mine * 1e3:.1f} / {np.percentile(ours, 90) * 1e3:.1f} ({total / mine / MB:.0f} MB/s)"
    )
    rows = []
    for floor_name, key, goal in (
        (f"(a) raw pyzmq, {JOBS} at once", "raw", ""),
        (f"(b) raw pyzmq, {JOBS} at once, each kept in a new file", "raw+write", ""),
        (f"(c) raw pyzmq, {JOBS} at once, each kept in a new file, fsynced", "raw+durable", target),
        (f"(d) no transfer: the same bytes kept in new files, fsynced, {JOBS} at once", "disk", ""),
    ):
        floor = series[key]
        base = statistics.median(floor)
        rows.append(
            [
                label,
                ours_text,
                f"{floor_name}: {base * 1e3:.1f} / {np.percentile(floor, 90) * 1e3:.1f} "
                f"({raw_total / base / MB:.0f} MB/s)",
                f"{mine / base:.2f}x",
                _met(mine / base <= float(goal[3:-1]), goal) if goal else "",
            ]
        )
    return rows


def step_costs(payload: bytes, folder: Path, address: str, context: zmq.Context) -> list[list[str]]:
    """The cost of each step of downloading one image, measured alone (median of 20), as rows."""
    from plantimager.camera.spool import Spool
    from plantimager.rig.ledger import Ledger

    folder.mkdir()
    ledger = Ledger(folder / "ledger.jsonl")
    spool = Spool(folder / "spool")
    client = NodeClient(context, address, timeout=5000)
    record = {"kind": "received", "capture_no": 1, "camera": "n/cam0", "file": "x.jpeg", "meta": {}}
    counter = iter(range(10**9))

    def write() -> None:
        number = next(counter)
        tmp, final = folder / f".tmp-{number}", folder / f"image-{number}.jpeg"
        write_durably(tmp, payload)
        link_new(tmp, final, "")
        tmp.unlink()

    def record_one() -> None:
        fsync_dir(folder)
        ledger.append_many([record])

    def release() -> float:  # the node's side of a release: two deletions, the folder removed
        code = f"c{next(counter)}"
        spool.put(code, "cam0", payload, {}, ext="jpeg")
        started = time.perf_counter()
        spool.release_many({code: ["cam0"]})
        return time.perf_counter() - started

    def timed(step: Any) -> float:
        started = time.perf_counter()
        step()
        return time.perf_counter() - started

    size = f"{len(payload) / MB:.2f} MB"
    measured = {
        f"SHA-256 of a {size} image (the node, when it stores it)": [
            timed(lambda: hashlib.sha256(payload).digest()) for _ in range(20)
        ],
        f"XXH3-128 of a {size} image (the controller's check of a transfer)": [
            timed(lambda: xxhash.xxh3_128_digest(payload)) for _ in range(20)
        ],
        f"write, fsync and link a new {size} file": [timed(write) for _ in range(20)],
        "record it: folder fsync, ledger write and fsync": [timed(record_one) for _ in range(20)],
        "a short call's round trip (ping)": [timed(client.ping) for _ in range(20)],
        f"the node's side of a release of a {size} image (two renames; deletion and fsync follow)": [
            release() for _ in range(20)
        ],
    }
    client.close()
    spool.close()
    ledger.close()
    return [[name, f"{statistics.median(v) * 1e3:.2f}"] for name, v in measured.items()]


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 and 8 nodes instead of 8 and 16")
    parser.add_argument("--captures", type=int, default=30, help="captures per variant (at least 30)")
    parser.add_argument("--downloads", type=int, default=None, help="timed downloads (default 10, quick 5)")
    parser.add_argument(
        "--skew-resolution", default="64x64", help="image size of the skew rounds, WxH (default 64x64)"
    )
    parser.add_argument(
        "--no-realtime-rows",
        action="store_true",
        help="skip the skew rounds of nodes whose firing threads keep ordinary scheduling",
    )
    parser.add_argument(
        "--no-settle-rows",
        action="store_true",
        help="skip the skew rounds of nodes that store at once (settle 0 ms)",
    )
    args = parser.parse_args(argv)
    captures = max(30, args.captures)
    downloads = args.downloads or (5 if args.quick else 10)
    sizes = (4, 8) if args.quick else (8, 16)
    width, _, height = args.skew_resolution.lower().partition("x")
    resolution = (int(width), int(height))
    info = machine_info({"pyzmq": zmq.__version__})
    print("# Rig benchmark: capture skew and download\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()), "\n")
    rows: list[list[str]] = []
    steps: list[list[str]] = []
    runs: list[dict[str, Any]] = [
        {"captures": captures, "downloads": downloads},  # default settle, plain views (~0.5 MB)
        # camera-like JPEGs (~3 MB), at full resolution from the start
        {
            "captures": 0,
            "downloads": downloads,
            "noise": NOISE,
            "resolution": DOWNLOAD_RESOLUTION,
            "steps": steps,
        },
    ]
    if not args.no_settle_rows:
        runs.append({"captures": captures, "downloads": 0, "settle_ms": 0.0})
    if not args.no_realtime_rows:  # what the firing threads' real-time scheduling buys
        runs.append({"captures": captures, "downloads": 0, "fire_priority": 0})
    try:
        for nodes in sizes:
            started = time.monotonic()
            for run in runs:
                with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
                    rows += bench_rig(nodes, Path(tmp), **{"resolution": resolution, **run})
            print(f"- {nodes} nodes measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    header = ["measure", "ours", "floor (same run)", "ours / floor", "target"]
    print(markdown_table(header, rows))
    print("\n" + "\n".join(clock_lines()))
    print(
        "\nCPU time per download (medians): the downloading process's, and the serving processes' "
        "meanwhile (the nodes, or the raw servers); both CPUs counted:\n"
    )
    print("\n".join(CPU_LINES))
    print("\nCost of each step of a download, measured alone on one image (ms, median of 20):\n")
    print(markdown_table(["step", "ms"], steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
