"""Costs of the camera node, each beside a floor measured in the same run.

1. **Capture to spool, 12 MP.** A backend hands out a prepared 4056x3040 frame (a plant view
   scaled up, with sensor-like noise so the JPEG has a realistic size); the node's capture path
   fires it, encodes it as JPEG and stores it in the spool (SHA-256, write, fsync, renames,
   directory fsyncs). Floor: simplejpeg encoding the same frame with the same settings, alone.
2. **Retrieval of that JPEG over RPC.** ``retrieve_still`` from a node in another process (sent
   from a memory map of the stored file) against raw pyzmq REQ/REP zero-copy sending the same bytes
   from another process, from memory (the floor) and from a fresh memory map of the file per
   request (what serving from disk costs by itself). Throughput in MB/s.
3. **JPEG encoding.** The node's encoder (contiguity check and parameters around simplejpeg), with
   and without a 90-degree rotation, against simplejpeg alone; and the preview path (a 640x480
   dummy preview frame, moving light band, JPEG) in frames per second.
4. **Resident memory of a node holding a spool.** A node process captures ``--captures`` 12 MP
   stills into its spool, then every one is retrieved over RPC; its RSS is printed at each stage
   beside the size of the data it holds. Flat means the growth is a small fraction of the data.

Method: for 2 and 4, servers run in processes pinned to one CPU and this process (the client) to
another when two are available, as in ``bench/rpc.py``; 1 and 3 run in this process first. Variants
are timed alternately, repetition by repetition (rotating the order), and the median is reported
with the 10th and 90th percentiles. Every process is stopped by its handle at the end, also on
errors and Ctrl-C.

Run: ``python bench/camera.py [--quick] [--captures N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import mmap
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import simplejpeg
import zmq
from PIL import Image

from _common import (
    ChildLink,
    Children,
    Summary,
    cpu_split,
    machine_info,
    markdown_table,
    paired_ratios,
    pin_current_thread,
    run_interleaved,
    summarize,
)
from plantimager.camera.backend import CameraBackend, Frame, clamp_resolution
from plantimager.camera.capture import CaptureRunner
from plantimager.camera.dummy import DummyBackend
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.slot import CameraSlot, encode_image, preview_jpeg
from plantimager.camera.spool import Spool
from plantimager.commons.cameradevice import Camera, CameraNode
from plantimager.commons.examples.scene import default_image_dir
from plantimager.commons.RPC import RPCClient

__all__ = ["main"]

HOST = "127.0.0.1"
FRAME_SIZE = (4056, 3040)
QUALITY = 90
MB = 1_000_000
#: Amplitude of the noise added to the prepared frame: it brings the JPEG to a camera-like size.
NOISE = 12
MIB = 1024 * 1024
REPLY_TIMEOUT_MS = 60_000


# -- a backend serving one prepared frame ------------------------------------------------------------
def prepared_frame(size: tuple[int, int] = FRAME_SIZE, seed: int = 1) -> np.ndarray:
    """A deterministic RGB frame: a plant view scaled to ``size`` plus mild noise, read-only."""
    with Image.open(sorted(default_image_dir().glob("*.jpg"))[0]) as img:
        base = np.asarray(img.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-NOISE, NOISE + 1, size=base.shape, dtype=np.int16)
    frame = np.clip(base + noise, 0, 255).astype(np.uint8)
    frame.flags.writeable = False
    return frame


class PreparedBackend(CameraBackend):
    """A camera whose every still is the same prepared frame (no capture cost of its own)."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self._lores = np.asarray(Image.fromarray(frame).resize((640, 480)))
        self._max = (int(frame.shape[1]), int(frame.shape[0]))

    @property
    def name(self) -> str:
        """``prepared``."""
        return "prepared"

    @property
    def max_resolution(self) -> tuple[int, int]:
        """The frame's size."""
        return self._max

    def get_resolution(self) -> tuple[int, int]:
        """The frame's size."""
        return self._max

    def set_resolution(self, width: int, height: int) -> tuple[int, int]:
        """Checked, but the frame's size stays."""
        clamp_resolution(width, height, self._max)
        return self._max

    def capture(self) -> Frame:
        """The prepared frame, stamped now."""
        return Frame(self.frame, time.time_ns(), None, {})

    def capture_lores(self) -> np.ndarray:
        """The frame at 640x480."""
        return self._lores

    @property
    def control_ranges(self) -> dict[str, tuple[float, float, float]]:
        """No controls."""
        return {}

    @property
    def controls(self) -> dict[str, float]:
        """No controls."""
        return {}

    def _apply_controls(self, values: dict[str, float]) -> None:
        pass


class NodeInterface(CameraNode, Camera):
    """Everything a node serves."""


@RPCClient.register_interface(NodeInterface)
class NodeClient(NodeInterface, RPCClient):
    """A controller's proxy of a node."""


# -- children ----------------------------------------------------------------------------------------
def node_child(link: ChildLink, *, spool_dir: str, captures: int = 0) -> None:
    """Child: a node of one prepared 12 MP camera; ``captures`` stills are stored before it is ready."""
    context = zmq.Context()
    spool = Spool(Path(spool_dir))
    node = CameraNodeServer(
        context,
        f"tcp://{HOST}:0",
        backends=[PreparedBackend(prepared_frame())],
        spool=spool,
        node_id="bench",
        stream_port=None,
    )
    thread = threading.Thread(target=node.serve_forever, name="bench-node", daemon=True)
    try:
        for i in range(captures):
            node.start_capture(f"pre{i}")
        thread.start()
        link.on_stop(node.stop_server)
        link.ready({"address": node.address, "pid": os.getpid()})
        link.stopping.wait()
    finally:
        node.close()
        thread.join(10)
        spool.close()
        context.destroy(linger=0)


def raw_child(link: ChildLink, *, path: str) -> None:
    """Child: the floor, a raw REP socket answering every request with the bytes of ``path``.

    A request ``b"get"`` is answered from a copy in memory; ``b"map"`` from a fresh memory map of
    the file, as the node does (so the cost of serving from disk can be told from that of the RPC).
    """
    data = Path(path).read_bytes()
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.linger = 0
    sock.rcvtimeo = 100  # lets the loop notice a stop request
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    try:
        link.ready({"address": f"tcp://{HOST}:{port}"})
        while not link.stopping.is_set():
            try:
                request = sock.recv()
            except zmq.Again:
                continue
            if request == b"map":
                with open(path, "rb") as fh:
                    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                sock.send(memoryview(mapped), copy=False)
            else:
                sock.send(data, copy=False)
    finally:
        sock.close()
        context.destroy(linger=0)


# -- formatting --------------------------------------------------------------------------------------
def ms(summary: Summary) -> str:
    """Median and p10-p90 in milliseconds."""
    return f"{summary.median * 1e3:.1f} ms ({summary.p10 * 1e3:.1f}-{summary.p90 * 1e3:.1f})"


def rate(size: int, summary: Summary) -> str:
    """Throughput of ``size`` bytes per call, median and range."""
    return (
        f"{size / summary.median / MB:.0f} MB/s ({size / summary.p90 / MB:.0f}-{size / summary.p10 / MB:.0f})"
    )


def ratio(summary: Summary) -> str:
    """A ratio with its p10-p90 range."""
    return f"{summary.median:.2f}x ({summary.p10:.2f}-{summary.p90:.2f})"


def mib(n: float) -> str:
    """Bytes in MiB."""
    return f"{n / MIB:.1f} MiB"


def alternate(
    variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each variant once per round, rotating the order; return seconds per round."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for round_no in range(warmup + repeats):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            variants[name]()
            if round_no >= warmup:
                out[name].append(time.perf_counter() - t0)
    return out


# -- the four measurements ---------------------------------------------------------------------------
def bench_capture(frame: np.ndarray, folder: Path, repeats: int) -> tuple[list[list[str]], int]:
    """(1) Capture to spool vs simplejpeg alone."""
    spool = Spool(folder / "capture-spool")
    slot = CameraSlot(0, "cam0", PreparedBackend(frame), quality=QUALITY)
    runner = CaptureRunner([slot], spool, "bench", max_ahead=60, max_late=5)
    counter = iter(range(10**9))
    sizes: list[int] = []

    def ours() -> None:
        code = f"c{next(counter)}"
        record = runner.capture(code)
        sizes.append(record["cameras"][0]["size"])

    def floor() -> None:
        simplejpeg.encode_jpeg(frame, quality=QUALITY, colorspace="RGB", colorsubsampling="420", fastdct=True)

    try:
        times = alternate({"ours": ours, "floor": floor}, repeats)
    finally:
        for code in spool.list_codes():
            spool.release(code)
        runner.close()
        spool.close()
    size = int(np.median(sizes))
    rows = [
        [
            "capture -> JPEG -> spool (fsync)",
            ms(summarize(times["ours"])),
            ratio(paired_ratios(times["ours"], times["floor"])),
        ],
        ["floor: simplejpeg.encode_jpeg alone", ms(summarize(times["floor"])), "1.00x"],
    ]
    return rows, size


def bench_retrieve(children: Children, folder: Path, batches: int, calls: int) -> tuple[list[list[str]], int]:
    """(2) retrieve_still over RPC vs raw pyzmq REQ/REP of the same bytes."""
    children.start("node", node_child, spool_dir=str(folder / "retrieve-spool"), captures=1)
    node = children.wait_ready()["node"]
    stored = folder / "retrieve-spool" / "pre0" / "cam0.jpeg"
    children.start("raw", raw_child, path=str(stored))
    raw_address = children.wait_ready()["raw"]["address"]
    context = zmq.Context()
    client = NodeClient(context, node["address"], timeout=REPLY_TIMEOUT_MS)
    sock = context.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = REPLY_TIMEOUT_MS
    sock.connect(raw_address)
    try:
        data, info = client.retrieve_still("pre0", 0)
        sock.send(b"get")
        raw = sock.recv(copy=False)
        if hashlib.sha256(data).digest() != hashlib.sha256(raw.buffer).digest() or len(data) != info["size"]:
            raise RuntimeError("the raw server does not send the bytes the node stores")
        size = len(data)
        del data, raw

        def ours(n: int) -> None:
            for _ in range(n):
                client.retrieve_still("pre0", 0)

        def floor(n: int) -> None:
            for _ in range(n):
                sock.send(b"get")
                sock.recv(copy=False)

        def mapped(n: int) -> None:
            for _ in range(n):
                sock.send(b"map")
                sock.recv(copy=False)

        variants = {"ours": ours, "floor": floor, "mapped": mapped}
        timings = run_interleaved(variants, batches=batches, calls=dict.fromkeys(variants, calls))
        seconds = timings.seconds
    finally:
        sock.close()
        client.close()
        context.destroy(linger=0)
    ours_s, floor_s, mapped_s = (summarize(seconds[k]) for k in ("ours", "floor", "mapped"))
    # Throughput ratios: ours MB/s / floor MB/s, batch by batch.
    rows = [
        [
            "retrieve_still over RPC (mmap, zero-copy)",
            rate(size, ours_s),
            ms(ours_s),
            ratio(paired_ratios(seconds["floor"], seconds["ours"])),
            ratio(paired_ratios(seconds["mapped"], seconds["ours"])),
        ],
        [
            "raw pyzmq REQ/REP, fresh mmap per request",
            rate(size, mapped_s),
            ms(mapped_s),
            ratio(paired_ratios(seconds["floor"], seconds["mapped"])),
            "1.00x",
        ],
        ["floor: raw pyzmq REQ/REP, bytes in memory", rate(size, floor_s), ms(floor_s), "1.00x", "-"],
    ]
    return rows, size


def bench_encode(frame: np.ndarray, repeats: int) -> list[list[str]]:
    """(3) Our JPEG encoder vs simplejpeg alone; the preview path in frames per second."""

    def ours() -> None:
        encode_image(frame, "jpeg", QUALITY)

    def ours_rotated() -> None:
        encode_image(np.ascontiguousarray(np.rot90(frame, k=-1)), "jpeg", QUALITY)

    def floor() -> None:
        simplejpeg.encode_jpeg(frame, quality=QUALITY, colorspace="RGB", colorsubsampling="420", fastdct=True)

    slot = CameraSlot(0, "cam0", DummyBackend(0))
    lores = slot.backend.capture_lores()

    def preview() -> None:
        preview_jpeg(slot)

    def preview_floor() -> None:
        simplejpeg.encode_jpeg(lores, quality=80, colorsubsampling="420", fastdct=True)

    times = alternate({"ours": ours, "rotated": ours_rotated, "floor": floor}, repeats)
    small = alternate(
        {
            "preview": lambda: [preview() for _ in range(20)],
            "pfloor": lambda: [preview_floor() for _ in range(20)],
        },
        repeats,
    )
    p, pf = summarize([t / 20 for t in small["preview"]]), summarize([t / 20 for t in small["pfloor"]])
    return [
        [
            "node encoder, 12 MP (checks + simplejpeg)",
            ms(summarize(times["ours"])),
            ratio(paired_ratios(times["ours"], times["floor"])),
        ],
        [
            "node encoder, 12 MP turned 90 (+ rotate copy)",
            ms(summarize(times["rotated"])),
            ratio(paired_ratios(times["rotated"], times["floor"])),
        ],
        ["floor: simplejpeg.encode_jpeg, 12 MP", ms(summarize(times["floor"])), "1.00x"],
        [
            f"dummy preview frame + JPEG, 640x480: {1 / p.median:.0f} frames/s",
            ms(p),
            ratio(paired_ratios(small["preview"], small["pfloor"])),
        ],
        [f"floor: simplejpeg alone, 640x480: {1 / pf.median:.0f} frames/s", ms(pf), "1.00x"],
    ]


def bench_memory(children: Children, folder: Path, captures: int) -> list[list[str]]:
    """(4) RSS of a node process while it stores and serves ``captures`` 12 MP stills."""
    children.start("memory-node", node_child, spool_dir=str(folder / "memory-spool"), captures=0)
    node = children.wait_ready()["memory-node"]
    process = psutil.Process(node["pid"])
    context = zmq.Context()
    client = NodeClient(context, node["address"], timeout=REPLY_TIMEOUT_MS)
    rows = []
    try:
        start = process.memory_info().rss
        rows.append(["started", mib(start), "-", mib(0)])
        held = 0
        for i in range(captures):
            held += client.start_capture(f"m{i}")["cameras"][0]["size"]
        after_capture = process.memory_info().rss
        rows.append([f"after {captures} captures", mib(after_capture), mib(after_capture - start), mib(held)])
        fetched = 0
        for i in range(captures):
            data, _ = client.retrieve_still(f"m{i}", 0)
            fetched += len(data)
            del data
        after_retrieve = process.memory_info().rss
        rows.append(
            [
                f"after retrieving all ({mib(fetched)} sent)",
                mib(after_retrieve),
                mib(after_retrieve - start),
                mib(held),
            ]
        )
    finally:
        client.close()
        context.destroy(linger=0)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer repetitions and captures)")
    parser.add_argument(
        "--captures", type=int, default=None, help="captures held for the memory figure (default 200)"
    )
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 15
    batches, calls = (10, 10) if args.quick else (30, 20)
    captures = args.captures or (40 if args.quick else 200)

    info = machine_info({"simplejpeg": simplejpeg.__version__, "pyzmq": zmq.__version__})
    print("# Camera node benchmark\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()), "\n")
    frame = prepared_frame()
    try:
        split = cpu_split()  # servers on one CPU, this process on another, as bench/rpc.py does
        server_cpus = split[1] if split else None
        with (
            tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp,
            Children("process", cpus=server_cpus) as children,
        ):
            folder = Path(tmp)
            # In-process figures first, before this process is pinned to one CPU.
            capture_rows, jpeg_size = bench_capture(frame, folder, repeats)
            encode_rows = bench_encode(frame, repeats)
            width, height = FRAME_SIZE
            print(f"## 1. Capture to spool, {width}x{height} JPEG q{QUALITY} ({jpeg_size / MB:.2f} MB)\n")
            print(markdown_table(["path", "median (p10-p90)", "ratio to floor"], capture_rows), "\n")

            pin_current_thread(split[0] if split else None)  # from here on: the client's CPU
            rows, size = bench_retrieve(children, folder, batches, calls)
            print(f"## 2. Retrieval of that JPEG ({size / MB:.2f} MB), server in another process\n")
            header = ["path", "throughput", "per call", "vs floor", "vs raw mmap"]
            print(markdown_table(header, rows), "\n")

            print("## 3. JPEG encoding\n")
            print(markdown_table(["path", "median (p10-p90)", "ratio to floor"], encode_rows), "\n")

            print(f"## 4. Resident memory of a node process holding {captures} captures of 12 MP\n")
            rows = bench_memory(children, folder, captures)
            print(markdown_table(["stage", "RSS", "growth", "data in spool"], rows), "\n")
            print("Flat: the growth stays a small fraction of the data held (images stay on disk).")
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
