"""Regenerate the synthetic plant views shipped in ``plantimager/commons/examples/data/plant``.

Usage::

    python tools/make_scene_images.py [--count 24] [--size 640x480] [--quality 90] [--seed 0] [--out DIR]

The views are rendered by :func:`plantimager.commons.examples.scene.render_views` at evenly spaced azimuths
and written as ``view_00.jpg``, ``view_01.jpg``, ... Earlier ``view_*.jpg`` files in the folder are removed
first so that the folder always holds exactly one set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "plantimager" / "commons" / "examples" / "data" / "plant"


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Render the views and write them as JPEG files; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="number of views (default 24)")
    parser.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--seed", type=int, default=0, help="plant and noise seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    import simplejpeg

    from plantimager.commons.examples.scene import render_views

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("view_*.jpg"):
        old.unlink()
    total = 0
    for i, image in enumerate(render_views(args.count, size=args.size, seed=args.seed)):
        data = simplejpeg.encode_jpeg(image, quality=args.quality, colorspace="RGB", colorsubsampling="420")
        (args.out / f"view_{i:02d}.jpg").write_bytes(data)
        total += len(data)
    print(f"wrote {args.count} views to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
