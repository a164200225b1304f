"""Render a reconstruction's point cloud beside one of its input images, as a PNG.

The cloud is drawn as seen by the camera that took the image (its pose in the model), so the
two halves can be compared at a glance. Used for the picture in the README::

    python tools/render_cloud.py DATASET IMAGE_NAME docs/images/reconstruction.png

DATASET must have been reconstructed (``plantimager dataset reconstruct DATASET``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_PLY_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and colours of COLMAP's binary PLY (x, y, z floats; red, green, blue bytes)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    count = int(next(line for line in header.splitlines() if line.startswith("element vertex")).split()[2])
    points = np.frombuffer(data, _PLY_POINT, count, end)
    return np.stack([points["x"], points["y"], points["z"]], 1), np.stack(
        [points["r"], points["g"], points["b"]], 1
    )


def _rotation(w: float, x: float, y: float, z: float) -> np.ndarray:
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def read_view(sparse: Path, name: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(R, t, [fx, fy, cx, cy])`` of image ``name`` in a COLMAP text model."""
    cameras = {}
    for line in (sparse / "cameras.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            cid, model, _w, _h, *params = line.split()
            values = [float(p) for p in params]
            cameras[cid] = values[:4] if model == "PINHOLE" else [values[0], values[0], values[1], values[2]]
    lines = [line for line in (sparse / "images.txt").read_text().splitlines() if not line.startswith("#")]
    for line in lines[::2]:
        fields = line.split()
        if len(fields) >= 10 and fields[9] == name:
            q = [float(v) for v in fields[1:5]]
            return _rotation(*q), np.array([float(v) for v in fields[5:8]]), cameras[fields[8]]
    raise SystemExit(f"{name} is not registered in {sparse}")


def render(points: np.ndarray, colours: np.ndarray, view, size: tuple[int, int]) -> Image.Image:
    rotation, translation, (fx, fy, cx, cy) = view
    seen = points @ rotation.T + translation
    front = seen[:, 2] > 1e-6
    seen, colours = seen[front], colours[front]
    order = np.argsort(-seen[:, 2])  # far points first, near ones drawn over them
    canvas = Image.new("RGB", size, (24, 26, 30))
    draw = ImageDraw.Draw(canvas)
    radius = max(1, round(size[0] / 320))
    for (x, y, z), colour in zip(seen[order], colours[order], strict=True):
        u, v = fx * x / z + cx, fy * y / z + cy
        draw.ellipse((u - radius, v - radius, u + radius, v + radius), fill=tuple(int(c) for c in colour))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("image", help="an image of the dataset, as named in the manifest")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=480, help="width of each half, in pixels")
    args = parser.parse_args()
    folder = args.dataset / "reconstruction"
    image = args.dataset / args.image
    for needed in (image, folder / "points.ply", folder / "sparse" / "images.txt"):
        if not needed.is_file():
            hint = "" if needed == image else " (run `plantimager dataset reconstruct` first)"
            raise SystemExit(f"{needed} does not exist{hint}")
    with Image.open(image) as photo:
        photo = photo.convert("RGB")
    points, colours = read_ply(folder / "points.ply")
    cloud = render(points, colours, read_view(folder / "sparse", args.image), photo.size)
    height = round(photo.height * args.width / photo.width)
    both = Image.new("RGB", (2 * args.width, height))
    both.paste(photo.resize((args.width, height), Image.Resampling.LANCZOS), (0, 0))
    both.paste(cloud.resize((args.width, height), Image.Resampling.LANCZOS), (args.width, 0))
    both.save(args.out, optimize=True)
    print(f"wrote {args.out}: {args.image} and {len(points)} points seen from its camera")


if __name__ == "__main__":
    main()
