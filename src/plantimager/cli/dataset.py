"""``plantimager dataset``: work on a dataset already on disk, without any camera.

- ``dataset export --format colmap DATASET`` writes COLMAP's text model (cameras with their recorded
  intrinsics, the known poses, an image list) to ``DATASET/colmap`` or ``--out``;
- ``dataset export --format meshroom DATASET`` writes Meshroom's (AliceVision's) SfMData with the
  same cameras and poses, and a sensor database, to ``DATASET/meshroom`` or ``--out``;
- ``dataset reconstruct DATASET`` runs COLMAP's structure from motion (the ``sfm`` extra) and writes
  the sparse model and a PLY point cloud, with a progress display and a summary.

Exit status: 0 done, 1 failed (not a dataset, pycolmap missing, no model), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plantimager.commons.errors import PlantImagerError
from plantimager.rig.calibration import Calibration, load_calibration
from plantimager.rig.colmap import ColmapExport, export_colmap
from plantimager.rig.meshroom import MeshroomExport, export_meshroom
from plantimager.rig.reconstruction import MATCHINGS, NEIGHBOURS, PHASES, ReconstructionSummary, reconstruct

__all__ = ["dataset"]

_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

_DATASET = click.argument(
    "folder", metavar="DATASET", type=click.Path(file_okay=False, path_type=Path), required=True
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_CALIBRATION = click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rig calibration (TOML or JSON): intrinsics and poses replacing those recorded.",
)


def _calibration(path: Path | None) -> Calibration | None:
    try:
        return None if path is None else load_calibration(path)
    except PlantImagerError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("dataset")
def dataset() -> None:
    """Export or reconstruct a dataset on disk."""


@dataset.command("export")
@_DATASET
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["colmap", "meshroom"]),
    default="colmap",
    show_default=True,
    help="What to write: COLMAP's text model, or Meshroom's (AliceVision's) SfMData and sensor database.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default DATASET/<format>.")
@_CALIBRATION
@_JSON
def export(folder: Path, fmt: str, out: Path | None, calibration: Path | None, as_json: bool) -> None:
    """Write DATASET's cameras, images and known poses for COLMAP or Meshroom (to DATASET/<format>).

    COLMAP: run it with ``--image_path DATASET``, the image list names files relative to it.
    Meshroom: ``meshroom_batch --input DATASET/meshroom/cameraInit.sfm``.
    """
    try:
        if fmt == "meshroom":
            result: ColmapExport | MeshroomExport = export_meshroom(folder, out, _calibration(calibration))
        else:
            result = export_colmap(folder, out, _calibration(calibration))
    except PlantImagerError as exc:
        raise click.ClickException(str(exc)) from None
    model = result.model
    if as_json:
        click.echo(
            json.dumps(
                {
                    "format": fmt,
                    "folder": str(result.folder),
                    "cameras": len(model.cameras),
                    "images": len(model.images),
                    "posed": len(model.posed),
                    "skipped": model.skipped,
                    "calibration": model.calibration,
                }
            )
        )
        return
    known = sum(camera.known for camera in model.cameras)
    _console.print(
        f"wrote {result.folder}: {len(model.cameras)} camera(s) ({known} with recorded intrinsics), "
        f"{len(model.images)} image(s), {len(model.posed)} with known pose"
    )
    for name, why in model.skipped.items():
        _console.print(f"left out {name}: {why}")


def _print_summary(summary: ReconstructionSummary) -> None:
    _console.print(
        f"registered {summary.registered} of {summary.images} images, {summary.points} points, "
        f"mean reprojection error {summary.reprojection_px:.3f} px"
        + ("" if summary.fixed_intrinsics else " (intrinsics refined)")
    )
    _console.print(f"features matched between {summary.pairs} pairs of images ({summary.matching})")
    if summary.reused:
        new = f"; features of {summary.extracted} new image(s) extracted" if summary.extracted else ""
        what = " and ".join(summary.reused)
        _console.print(f"reused the {what} of the previous run{new} (--fresh redoes them)")
    if summary.rig:
        _console.print(f"the {summary.rig_cameras} cameras held as one rig over {summary.frames} captures")
    if summary.max_centre_error is not None:
        worst = max(summary.centre_errors.values())
        _console.print(
            f"against the recorded poses: camera centres within {worst * 1000:.1f} mm "
            f"({100 * summary.max_centre_error:.2f}% of the {summary.ring_radius:.3f} m ring radius)"
        )
    if summary.unregistered:
        _console.print(f"not registered: {', '.join(summary.unregistered)}")
    if summary.models > 1:
        _console.print(f"COLMAP made {summary.models} separate models; the largest is kept")
    _console.print(f"model in {summary.folder}/sparse, point cloud {summary.folder}/points.ply")
    if summary.frame == "object":
        _console.print(
            f"both in the object's frame, in metres (z up the turntable's axis): moved onto the "
            f"recorded poses of {summary.aligned} images"
        )
    else:
        _console.print(
            "both in COLMAP's own frame and scale: too few registered images have a pose, "
            "or their poses do not fit the model"
        )


@dataset.command("reconstruct")
@_DATASET
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Default DATASET/reconstruction."
)
@_CALIBRATION
@click.option(
    "--rig/--no-rig",
    default=True,
    show_default=True,
    help="Hold the cameras as one rig, fixed to each other (each capture a frame of it); "
    "--no-rig if cameras were moved between captures.",
)
@click.option(
    "--matching",
    type=click.Choice(MATCHINGS),
    default="auto",
    show_default=True,
    help="Pairs of images to match: every pair (exhaustive), or each image with the images taken "
    "nearest to it (spatial, needs every image's pose); auto: spatial when every image has a pose "
    "and there are more than NEIGHBOURS + 1 images.",
)
@click.option(
    "--neighbours",
    type=click.IntRange(min=1),
    default=NEIGHBOURS,
    show_default=True,
    help="Images each image is matched with in spatial matching.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Extract and match features again, even where the previous run's still fit "
    "(they are reused while the images, cameras and matching are the same; of a dataset that "
    "gained images, only the new images' features are extracted).",
)
@_JSON
def reconstruct_command(
    folder: Path,
    out: Path | None,
    calibration: Path | None,
    rig: bool,
    matching: str,
    neighbours: int,
    fresh: bool,
    as_json: bool,
) -> None:
    """Reconstruct DATASET with COLMAP: sparse model and PLY point cloud (needs plantimager[sfm])."""
    calibrated = _calibration(calibration)
    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        disable=as_json or not _console.is_terminal,
    ) as bars:
        tasks = {phase: bars.add_task(phase, total=None, visible=False) for phase in PHASES}

        def show(phase: str, done: int, total: int) -> None:
            bars.update(tasks[phase], completed=done, total=total, visible=True)

        try:
            summary = reconstruct(
                folder,
                out,
                progress=show,
                calibration=calibrated,
                rig=rig,
                matching=matching,
                neighbours=neighbours,
                fresh=fresh,
            )
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
    else:
        _print_summary(summary)
