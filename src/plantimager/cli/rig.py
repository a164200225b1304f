"""``plantimager rig``: list, capture, download, configure, shut down and inspect a rig of cameras.

A thin adapter over :class:`plantimager.rig.Rig`. Exit status: 0 when everything worked, 1 when
nothing was done (bad input, registry unreachable, dataset not writable...), 2 for a usage error,
3 when some cameras failed while the others completed (each failure is printed with its reason).

Testing hook: when the environment variable ``PLANTIMAGER_RIG_PAUSE_AFTER`` is ``N:PATH``,
``rig download`` prints ``paused after N images`` once N images are settled and holds its worker
there until the file PATH exists (at most two minutes). It lets a test stop the controller at a
known point of a download; it changes nothing when the variable is not set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from plantimager.cli.options import parse_resolution
from plantimager.cli.rigcommon import (
    console,
    dataset_options,
    echo_json,
    fail_partial,
    ms,
    open_rig,
    rig_options,
    session_of,
)
from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig import CaptureRecord, DownloadProgress, Rig
from plantimager.rig.session import current_session
from plantimager.rig.settings import ROTATIONS

__all__ = ["PAUSE_ENV", "rig"]

logger = logging.getLogger(__name__)

#: Test-only hook of ``rig download`` (see the module documentation).
PAUSE_ENV = "PLANTIMAGER_RIG_PAUSE_AFTER"
_PAUSE_LIMIT_S = 120.0


@click.group("rig")
def rig() -> None:
    """Control a rig of camera nodes found through a device registry."""


@rig.command("list")
@rig_options
@click.option("--watch", is_flag=True, help="Keep running and print arrivals and departures.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cameras(registry: str, wait: float, expect: int, watch: bool, as_json: bool) -> None:
    """List the cameras of the rig (and, with --watch, follow them live)."""
    with open_rig(registry, wait, expect) as the_rig:
        cameras = the_rig.cameras()
        if as_json:
            echo_json(
                {"cameras": [c.as_dict() for c in cameras], "nodes": [n.as_dict() for n in the_rig.nodes()]}
            )
        else:
            table = Table(
                "camera", "node id", "resolution", "encoding", "rotation", "preview", title="cameras"
            )
            for cam in cameras:
                width, height = cam.resolution
                table.add_row(
                    cam.key, cam.node_id, f"{width}x{height}", cam.encoding, str(cam.rotation), cam.stream_url
                )
            console.print(table)
            for node in the_rig.nodes():
                if node.state != "ready":
                    console.print(f"[yellow]node {node.name} at {node.address}: {node.state} {node.error}[/]")
                if node.clock_flag:
                    console.print(f"[yellow]node {node.name}: {node.clock_flag}[/]")
            console.print(f"{len(cameras)} camera(s) on {len(the_rig.nodes())} node(s), registry {registry}")
        if watch:
            _watch(the_rig)


def _watch(the_rig: Rig) -> None:
    start = time.monotonic()
    the_rig.on_event(
        lambda e: click.echo(f"{e.at - start:9.3f} s  {e.kind:<17} {e.camera or e.node} {e.detail}")
    )
    click.echo("watching; Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


@rig.command("capture")
@rig_options
@dataset_options
@click.argument("cameras", nargs=-1)
@click.option("--template", default=None, help="File-name template of new images (str.format fields).")
@click.option("--new-session", is_flag=True, help="Start a new session folder under --captures.")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True, help="Captures to take.")
@click.option("--interval", type=click.FloatRange(0), default=0.0, help="Seconds between captures.")
@click.option("--download", "then_download", is_flag=True, help="Download the images afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the capture records as JSON.")
def capture(
    registry: str,
    wait: float,
    expect: int,
    dataset: Path | None,
    captures: Path,
    cameras: tuple[str, ...],
    template: str | None,
    new_session: bool,
    count: int,
    interval: float,
    then_download: bool,
    as_json: bool,
) -> None:
    """Fire CAMERAS (node/camera or node names; all when none) together; images stay on the nodes.

    Each capture gets the next number of the dataset; `plantimager rig download` fetches the images.
    """
    with session_of(dataset, captures, new_session) as folder:
        failed: RigError | None = None
        with open_rig(registry, wait, expect, dataset=folder, template=template) as the_rig:
            records = []
            for number in range(count):
                if number:
                    time.sleep(interval)  # the user's pace between captures
                try:
                    record = the_rig.capture(list(cameras) or None)
                except RigError as exc:
                    failed = exc
                    record = getattr(exc, "record", None)
                except PlantImagerError as exc:
                    raise click.ClickException(str(exc)) from None
                if record is not None:
                    records.append(record)
                    if not as_json:
                        _print_capture(record)
            if as_json:
                echo_json([r.as_dict() for r in records])
            if then_download:
                _download(the_rig, jobs=None, quiet=as_json)
        if failed is not None:
            fail_partial(failed, "capture")


def _print_capture(record: CaptureRecord) -> None:
    table = Table("camera", "file", "offset ms", "node clock ms", "bytes", show_edge=False)
    for shot in record.shots:
        clock = ms(shot.clock_offset_ms, signed=True) + (" !" if shot.node in record.clock_flags else "")
        table.add_row(shot.camera, shot.file, f"{shot.offset_ms:+.3f}", clock, str(shot.size))
    console.print(table)
    console.print(
        f"capture {record.capture_no}: {len(record.shots)} image(s), skew {ms(record.skew_ms)} ms, "
        f"lead {record.lead_ms:.1f} ms, data code {record.data_code}, into {record.dataset}"
    )
    for node, flag in sorted(record.clock_flags.items()):
        console.print(f"[yellow]node {node}: {flag}[/]")


@rig.command("download")
@rig_options
@dataset_options
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Nodes transferring at once."
)
@click.option("--json", "as_json", is_flag=True, help="Print the download report as JSON.")
def download(
    registry: str, wait: float, expect: int, dataset: Path | None, captures: Path, jobs: int, as_json: bool
) -> None:
    """Fetch every image the cameras owe the dataset, verify it, store it, release it on the node."""
    folder = dataset if dataset is not None else current_session(captures)
    if folder is None:
        raise click.ClickException(f"no session under {captures} yet: capture first, or give --dataset")
    with open_rig(registry, wait, expect, dataset=folder, jobs=jobs) as the_rig:
        _download(the_rig, jobs=jobs, quiet=as_json)


def _download(the_rig: Rig, *, jobs: int | None, quiet: bool) -> None:
    pause = _pause_hook()
    columns = (
        TextColumn("downloading"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[size]}"),
    )
    progress = Progress(*columns, TimeElapsedColumn(), console=console, disable=quiet)
    task = progress.add_task("download", total=None, size="")
    written = [0]

    def on_image(event: DownloadProgress) -> None:
        written[0] += event.size
        progress.update(task, completed=event.done, total=event.total, size=f"{written[0] / 1e6:.1f} MB")
        if not event.ok:
            progress.console.print(f"[red]{event.camera} capture {event.capture_no}: {event.reason}[/]")
        pause(event)

    try:
        with progress:
            report = the_rig.download_all(jobs=jobs, progress=on_image)
    except RigError as exc:
        report = getattr(exc, "report", None)
        if report is not None and not quiet:
            written = f"{len(report.files)} image(s) written ({report.bytes / 1e6:.1f} MB)"
            console.print(f"{written}; {report.owed} still owed")
        elif report is not None:
            echo_json(report.as_dict())
        fail_partial(exc, "download")
    except PlantImagerError as exc:
        raise click.ClickException(str(exc)) from None
    if quiet:
        echo_json(report.as_dict())
    else:
        console.print(
            f"{len(report.files)} image(s) written ({report.bytes / 1e6:.1f} MB in {report.seconds:.2f} s), "
            f"{report.released} released on the nodes, into {report.dataset}"
        )


def _pause_hook() -> Callable[[DownloadProgress], None]:
    """The test-only pause of ``rig download`` (see the module documentation); a no-op by default."""
    spec = os.environ.get(PAUSE_ENV, "")
    count, sep, path = spec.partition(":")
    if not spec:
        return lambda event: None
    if not sep or not count.isdigit() or not path:
        raise click.ClickException(f"{PAUSE_ENV} must be N:PATH, got {spec!r}")
    after, flag = int(count), Path(path)

    def hold(event: DownloadProgress) -> None:
        if event.done != after:
            return
        click.echo(f"paused after {after} images", err=False)
        deadline = time.monotonic() + _PAUSE_LIMIT_S
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for a file another process creates

    return hold


def _parse_controls(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any] | None:
    if not values:
        return None
    controls: dict[str, Any] = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE such as ExposureTime=20000, got {item!r}")
        try:
            controls[name] = json.loads(text)
        except ValueError:
            controls[name] = text
    return controls


@rig.command("config")
@rig_options
@click.argument("cameras", nargs=-1)
@click.option("--resolution", callback=parse_resolution, metavar="WxH", help="Still resolution.")
@click.option("--encoding", type=click.Choice(["jpeg", "png"]), help="Image encoding.")
@click.option(
    "--rotation", type=click.Choice([str(r) for r in ROTATIONS]), help="Clockwise rotation, degrees."
)
@click.option("--quality", type=click.IntRange(1, 100), help="JPEG quality.")
@click.option(
    "--control",
    "controls",
    multiple=True,
    callback=_parse_controls,
    metavar="NAME=VALUE",
    help="Camera control (repeatable).",
)
def config(
    registry: str,
    wait: float,
    expect: int,
    cameras: tuple[str, ...],
    resolution: tuple[int, int] | None,
    encoding: str | None,
    rotation: str | None,
    quality: int | None,
    controls: dict[str, Any] | None,
) -> None:
    """Configure CAMERAS (node/camera or node names; all when none) and print their settings."""
    settings = {
        "resolution": resolution,
        "encoding": encoding,
        "rotation": None if rotation is None else int(rotation),
        "quality": quality,
        "controls": controls,
    }
    with open_rig(registry, wait, expect) as the_rig:
        result: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        try:
            for target in cameras or [None]:
                try:
                    if target is None:
                        result.update(the_rig.configure_all(**settings))
                    else:
                        result.update(the_rig.configure(target, **settings))
                except RigError as exc:
                    result.update(getattr(exc, "result", {}))
                    failures.update(exc.failures)
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
        table = Table("camera", "resolution", "encoding", "quality", "rotation", "controls", show_edge=False)
        for key, item in sorted(result.items()):
            width, height = item.get("resolution", [0, 0])
            controls_text = ", ".join(f"{k}={v}" for k, v in (item.get("controls") or {}).items())
            table.add_row(
                key,
                f"{width}x{height}",
                str(item.get("encoding")),
                str(item.get("quality")),
                str(item.get("rotation")),
                controls_text,
            )
        console.print(table)
    if failures:
        fail_partial(RigError("configure", failures), "configure")


@rig.command("shutdown")
@rig_options
@click.argument("nodes", nargs=-1)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def shutdown(registry: str, wait: float, expect: int, nodes: tuple[str, ...], yes: bool) -> None:
    """Stop NODES (node names, or cameras of theirs; all when none)."""
    with open_rig(registry, wait, expect) as the_rig:
        targets = list(nodes) or [n.name for n in the_rig.nodes() if n.state == "ready"]
        if not targets:
            raise click.ClickException("no camera node to shut down")
        if not yes:
            click.confirm(f"Shut down {len(targets)} camera node(s): {', '.join(targets)}?", abort=True)
        try:
            done = the_rig.shutdown(targets)
        except RigError as exc:
            done = getattr(exc, "result", [])
            console.print(f"shut down: {', '.join(done) or 'none'}")
            fail_partial(exc, "shutdown")
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
        console.print(f"shut down {len(done)} node(s): {', '.join(done)}")


@rig.command("status")
@rig_options
@dataset_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(
    registry: str, wait: float, expect: int, dataset: Path | None, captures: Path, as_json: bool
) -> None:
    """Show each node's health and what the dataset is still owed.

    ``clock ms`` is the node's clock offset as its time service reports it (``-``: unknown); the
    cameras of nodes whose clocks disagree fire apart by that much.
    """
    folder = dataset if dataset is not None else current_session(captures)
    with open_rig(registry, wait, expect, dataset=folder) as the_rig:
        report = the_rig.status()
    if as_json:
        echo_json(report)
        return
    columns = (
        "node",
        "state",
        "id",
        "address",
        "cameras",
        "rtt ms",
        "clock ms",
        "spool MB",
        "held",
        "uptime s",
    )
    table = Table(*columns, show_edge=False)
    for name, info in sorted(report["nodes"].items()):
        node_status = info.get("status") or {}
        spool = node_status.get("spool") or {}
        table.add_row(
            name,
            info["state"] + (f" ({info['error']})" if info.get("error") else ""),
            info.get("node_id", ""),
            info.get("address", ""),
            str(len(info.get("cameras", []))),
            ms(info.get("rtt_ms")),
            ms(node_status.get("clock_offset_ms"), signed=True) + (" !" if info.get("clock_flag") else ""),
            f"{spool.get('usage_bytes', 0) / 1e6:.1f}" if spool else "-",
            str(spool.get("pending_captures", "-")),
            str(node_status.get("uptime_s", "-")),
        )
    console.print(table)
    for name, info in sorted(report["nodes"].items()):
        if info.get("clock_flag"):
            console.print(f"[yellow]node {name}: {info['clock_flag']}[/]")
    summary = report.get("dataset")
    if summary:
        owed = sum(summary["owed"].values())
        counts = f"{summary['captures']} capture(s), {summary['images']} image(s) received"
        console.print(
            f"dataset {summary['path']}: {counts}, {owed} owed, {summary['lost']} lost, "
            f"next capture number {summary['next_capture_no']}"
        )
        for camera, count in sorted(summary["owed"].items()):
            console.print(f"  {camera} owes {count} image(s)")
    else:
        console.print("no dataset yet")


def _add_scan() -> None:
    from plantimager.cli.scan import scan  # its own module: a scan is more than one rig call

    rig.add_command(scan)


_add_scan()
