"""``plantimager rig scan``: capture every camera at each position of a turntable, resumably.

A thin adapter over :meth:`plantimager.rig.Rig.scan`. It prints one line per position taken
(``position 3/36 at 20.0 deg: capture 3``) under two progress bars (positions, images
downloaded). Running the same command again on the same dataset finishes an interrupted scan.
Ctrl-C stops after the position under way (a second Ctrl-C at once); either way the scan stays
resumable.
Exit status as for the other ``rig`` commands: 0 done, 1 nothing done (bad input, unknown
turntable...), 2 usage error, 3 cameras failed at a position (the scan stops there).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plantimager.cli.rigcommon import (
    EXIT_PARTIAL,
    console,
    dataset_options,
    open_rig,
    rig_options,
    session_of,
)
from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig.scan import ScanProgress
from plantimager.rig.scanplan import MAX_POSITIONS

__all__ = ["EXIT_PARTIAL", "scan"]

logger = logging.getLogger(__name__)


def _parse_angles(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected angles in degrees separated by commas, got {value!r}") from None


@click.command("scan")
@rig_options
@dataset_options
@click.option("--new-session", is_flag=True, help="Start a new session folder under --captures.")
@click.option(
    "--positions",
    type=click.IntRange(1, MAX_POSITIONS),
    default=1,
    show_default=True,
    help="Turntable positions, evenly spaced around a full turn (1 without a turntable: one capture).",
)
@click.option("--angles", callback=_parse_angles, default=None, help="The angles instead, e.g. 0,45,90.")
@click.option("--start", type=float, default=0.0, show_default=True, help="First angle, degrees.")
@click.option("--turntable", default=None, help="Turntable name in the registry (default: the only one).")
@click.option("--new", "new_scan", is_flag=True, help="Start a new scan even if the last one had this plan.")
@click.option("--json", "as_json", is_flag=True, help="Print the scan report as JSON.")
def scan(
    registry: str,
    wait: float,
    expect: int,
    dataset: Path | None,
    captures: Path,
    new_session: bool,
    positions: int,
    angles: list[float] | None,
    start: float,
    turntable: str | None,
    new_scan: bool,
    as_json: bool,
) -> None:
    """Turn the table to each position, fire every camera there, download while it turns on.

    Resumable: the plan is kept in the dataset; the same command again continues from the first
    position not yet taken.
    """
    with session_of(dataset, captures, new_session) as folder:
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if stop.is_set():  # a second Ctrl-C: stop at once (what is recorded stays resumable)
                signal.signal(signum, signal.default_int_handler)
                raise KeyboardInterrupt
            progress.console.print("stopping after the position under way (Ctrl-C again: at once)")
            stop.set()

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        progress = Progress(*columns, console=console, disable=as_json)
        where = progress.add_task("positions", total=None)
        images = progress.add_task("images downloaded", total=None)
        fetched = [0]
        cameras: list[int] = []  # the rig's, once it is open: the images bar's total is set once
        shown: list[bool] = []
        showing = threading.Lock()

        def on_progress(event: ScanProgress) -> None:
            with showing:  # the bars appear with the scan's first step, not before a refusal
                if not shown:
                    shown.append(True)
                    progress.start()
            if event.phase == "download" and event.download is not None:
                fetched[0] += event.download.ok
                progress.update(images, completed=fetched[0])
                if not event.download.ok:
                    progress.console.print(f"[red]{event.download.camera}: {event.download.reason}[/]")
                return
            progress.update(where, completed=event.taken, total=event.total)
            if cameras:  # the images of the positions left (a resumed scan has taken some before)
                progress.update(images, total=cameras.pop() * (event.total - event.taken))
            if event.phase == "captured" and not as_json:
                angle = "-" if event.angle is None else f"{event.angle:.1f} deg"
                progress.console.print(f"position {event.index + 1}/{event.total} at {angle}: captured")

        failed: RigError | None = None
        report = None
        previous = signal.signal(signal.SIGINT, on_signal)
        try:
            with open_rig(registry, wait, expect, dataset=folder) as the_rig:
                cameras.append(len(the_rig.cameras()))
                try:
                    report = the_rig.scan(
                        angles if angles is not None else positions,
                        turntable,
                        start=start,
                        new=new_scan,
                        progress=on_progress,
                        stop=stop,
                    )
                except RigError as exc:
                    failed, report = exc, getattr(exc, "report", None)
                finally:
                    with showing:
                        if shown:
                            progress.stop()
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            signal.signal(signal.SIGINT, previous)
        if report is not None:
            if as_json:
                click.echo(json.dumps(report.as_dict(), indent=1, default=str))
            else:
                done = "complete" if report.complete else "not complete"
                console.print(
                    f"scan {report.scan} of {len(report.angles)} position(s) {done}: "
                    f"{len(report.captured)} taken now, {len(report.already)} before, "
                    f"{fetched[0]} image(s) downloaded, into {folder}"
                )
        if failed is not None:
            console.print(f"[bold red]{failed}[/]")
            raise click.exceptions.Exit(EXIT_PARTIAL)
