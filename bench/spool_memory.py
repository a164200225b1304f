"""Resident memory of the capture spool while storing and serving many JPEG-sized images.

Stores ``--count`` captures of ``--size`` bytes in a spool under a temporary directory, reads them
all back (hashing every byte, as a transfer would touch them), and prints the process RSS at each
stage beside the total data size. The spool keeps only metadata in memory and serves images from
memory maps, so RSS growth should stay a small fraction of the data size and close to the floor of
one image held at a time.

Timing figures are printed beside floors measured in the same run: hashing plus a plain write +
fsync of the same bytes to one file (what any checksummed durable store must do), and a plain
``read()`` of a stored file into ``bytes`` plus hashing.

Run: ``python bench/spool_memory.py [--count 200] [--size 4000000]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import struct
import tempfile
import time
from pathlib import Path

import psutil

from plantimager.camera.spool import Spool

__all__ = ["main"]

MB = 1024 * 1024


def rss() -> int:
    """Return this process's resident set size in bytes."""
    return psutil.Process().memory_info().rss


def fmt(n: float) -> str:
    return f"{n / MB:9.1f} MiB"


def write_floor(folder: Path, data: memoryview, count: int) -> float:
    """Seconds per SHA-256 + plain write + fsync of ``data`` to a fresh file (no metadata, no renames)."""
    start = time.perf_counter()
    for i in range(count):
        hashlib.sha256(data).hexdigest()
        path = folder / f"floor-{i}.bin"
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="number of captures (default 200)")
    parser.add_argument("--size", type=int, default=4_000_000, help="bytes per capture (default 4 MB)")
    args = parser.parse_args()
    count, size = args.count, args.size
    total = count * size

    # One buffer reused for every capture; a per-capture header makes each image distinct.
    image = bytearray(os.urandom(size))
    view = memoryview(image)
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
        folder = Path(tmp)
        floor_put = write_floor(folder, view, min(count, 20))
        gc.collect()
        base = rss()
        print(f"captures: {count} x {size / 1e6:.1f} MB = {total / 1e6:.0f} MB of image data")
        print(f"rss at start (after allocating one {size / 1e6:.1f} MB image buffer): {fmt(base)}")

        with Spool(folder / "spool") as spool:
            start = time.perf_counter()
            for i in range(count):
                struct.pack_into(">Q", image, 0, i)
                spool.put(f"d{i // 4}", f"cam{i % 4}", view, {"camera_index": i % 4, "i": i}, ext="jpeg")
            put_time = (time.perf_counter() - start) / count
            gc.collect()
            after_put = rss()

            peak = after_put
            start = time.perf_counter()
            for code, cameras in spool.pending().items():
                for camera in cameras:
                    data = spool.read(code, camera)
                    digest = hashlib.sha256(data).hexdigest()
                    peak = max(peak, rss())
                    data.release()
                    assert digest == spool.get(code, camera).sha256
            read_time = (time.perf_counter() - start) / count
            gc.collect()
            after_read = rss()

            sample = spool.get("d0", "cam0").path
            start = time.perf_counter()
            for _ in range(min(count, 20)):
                hashlib.sha256(sample.read_bytes()).hexdigest()
            floor_read = (time.perf_counter() - start) / min(count, 20)
            index_bytes = spool.usage_bytes() - total

    print()
    print(f"{'stage':<34}{'rss':>13}{'growth':>14}{'growth/data':>13}{'growth/image':>14}")
    for label, value in (
        ("after putting all", after_put),
        ("peak while reading (1 view held)", peak),
        ("after reading all", after_read),
    ):
        growth = value - base
        print(f"{label:<34}{fmt(value)}{fmt(growth)}{growth / total:13.4f}{growth / size:14.2f}")
    print(f"{'(PEPI-style: all images in RAM)':<34}{'':>13}{fmt(total)}{1:13.4f}{count:14.2f}")
    print()
    print(f"metadata on disk: {index_bytes} bytes for {count} captures ({index_bytes / count:.0f} B each)")
    print(
        f"put : {put_time * 1e3:7.2f} ms/capture  floor sha256+write+fsync {floor_put * 1e3:7.2f} ms  "
        f"ratio {put_time / floor_put:5.2f}"
    )
    print(
        f"read: {read_time * 1e3:7.2f} ms/capture  floor read()+hash {floor_read * 1e3:7.2f} ms  "
        f"ratio {read_time / floor_read:5.2f}"
    )


if __name__ == "__main__":
    main()
