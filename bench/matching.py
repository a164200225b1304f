"""Reconstruction of a turntable scan: spatial matching beside exhaustive matching, in the same run.

The demo's rig (8 simulated camera nodes side by side in one ring, each its own process, on a
simulated turntable; registry and turntable in this process) scans the plant at ``--positions``
table positions (12: 96 images) at ``--resolution`` (640x480), then ``reconstruct`` runs on that
dataset with every pair of images matched (the floor: what every reconstruction did before
spatial matching) and with each image matched only with its ``--neighbours`` nearest (50,
the default), alternately first, ``--rounds`` times each.

Printed per matching (medians): the pairs compared, the seconds of feature extraction, of
matching and of the whole reconstruction, the images registered, the models made and the worst
camera centre's distance from its true place after the similarity alignment, as a percentage of
the ring's radius. Exhaustive matching compares n(n-1)/2 pairs, spatial at most n x neighbours:
the ratio of the two times is the point, and how it grows with ``--positions``.

Every process is stopped by its handle at the end, also on errors and Ctrl-C. Nothing leaves
127.0.0.1. Run: ``python bench/matching.py [--positions N] [--neighbours K] [--rounds N]
[--resolution WxH] [--keep FOLDER]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pycolmap
import zmq

from _common import machine_info, markdown_table
from plantimager.demo import Demo
from plantimager.rig.reconstruction import NEIGHBOURS, reconstruct
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer

__all__ = ["main"]

HOST = "127.0.0.1"
TABLE = "table"
#: The figures of one reconstruction, in the table's order, and how each is printed.
FORMATS = {
    "pairs": "{:.0f}",
    "features s": "{:.1f}",
    "matching s": "{:.1f}",
    "total s": "{:.1f}",
    "registered": "{:.0f} / {images}",
    "models": "{:.0f}",
    "worst centre %": "{:.2f}",
}
FIGURES = tuple(FORMATS)
#: The figures compared as spatial / exhaustive in the table's last row.
RATIOS = ("matching s", "total s")


def scan(folder: Path, cameras: int, positions: int, resolution: tuple[int, int]) -> Path:
    """Scan the demo's rig at ``positions`` table positions into ``folder``; the dataset's folder."""
    context = zmq.Context()
    server = TurntableServer(context, f"tcp://{HOST}:0", backend=DummyTurntable(), speed=90.0)
    demo = Demo(
        folder / "captures",
        nodes=cameras,
        registry_port=0,
        resolution=resolution,
        say=lambda line: print(line, file=sys.stderr),
        turntable=TABLE,
    )
    try:
        with serve_in_thread(server):
            demo.start()
            server.register_to_registry("turntable", TABLE, demo.registry_url)
            assert demo.rig is not None
            dataset = folder / "dataset"
            demo.rig.use_dataset(dataset)
            report = demo.rig.scan(positions=positions, turntable=TABLE)
            if not report.complete:
                raise SystemExit(f"the scan did not complete: {report}")
            failures = demo.rig.download_all().failures
            if failures:
                raise SystemExit(f"the download failed: {failures}")
            return dataset
    finally:
        demo.stop()
        server.close()
        context.destroy(linger=0)


def reconstruct_once(dataset: Path, out: Path, matching: str, neighbours: int) -> dict[str, float]:
    """One reconstruction of ``dataset`` into ``out`` (replaced); its :data:`FIGURES`."""
    started: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        started.setdefault(phase, time.perf_counter())

    t0 = time.perf_counter()
    summary = reconstruct(
        dataset, out, progress=progress, matching=matching, neighbours=neighbours, fresh=True
    )
    total = time.perf_counter() - t0
    worst = summary.max_centre_error
    return {
        "pairs": summary.pairs,
        "features s": started["matching"] - started["features"],
        "matching s": started["mapping"] - started["matching"],
        "total s": total,
        "registered": summary.registered,
        "models": summary.models,
        "worst centre %": 100 * worst if worst is not None else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--positions", type=int, default=12)
    parser.add_argument("--neighbours", type=int, default=NEIGHBOURS)
    parser.add_argument("--rounds", type=int, default=2, help="reconstructions with each matching")
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--keep", type=Path, default=None, help="scan into this folder and keep it")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.resolution.lower().split("x"))
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-matching-"))
    figures: dict[str, dict[str, list[float]]] = {
        "exhaustive": defaultdict(list),
        "spatial": defaultdict(list),
    }
    try:
        dataset = scan(folder, args.cameras, args.positions, (width, height))
        for number in range(args.rounds):
            order = ("exhaustive", "spatial") if number % 2 == 0 else ("spatial", "exhaustive")
            for matching in order:
                one = reconstruct_once(dataset, folder / f"{matching}-{number}", matching, args.neighbours)
                for key, value in one.items():
                    figures[matching][key].append(value)
                print(f"round {number + 1}/{args.rounds} {matching}: {one}", file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    images = args.cameras * args.positions
    medians = {name: {key: statistics.median(v) for key, v in f.items()} for name, f in figures.items()}
    labels = {
        "exhaustive": "exhaustive, every pair (floor)",
        "spatial": f"spatial, {args.neighbours} nearest",
    }
    rows = [
        [label, *(FORMATS[key].format(medians[name][key], images=images) for key in FIGURES)]
        for name, label in labels.items()
    ]
    ratio = {key: medians["spatial"][key] / medians["exhaustive"][key] for key in RATIOS}
    rows.append(["spatial / exhaustive", *(f"{ratio[key]:.2f}x" if key in ratio else "" for key in FIGURES)])
    extra = {"pycolmap": pycolmap.__version__, "images": str(images), "rounds": str(args.rounds)}
    print(machine_info(extra))
    print(f"{args.cameras} cameras x {args.positions} positions at {width}x{height}; medians:")
    print(markdown_table(["matching", *FIGURES], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
