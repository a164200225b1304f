"""What the ``plantimager rig`` commands share: their options, opening a rig, and printing results."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from plantimager.cli.options import key_options, keyring_of
from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig import DEFAULT_REGISTRY_URL, Rig
from plantimager.rig.session import DEFAULT_CAPTURES, session_for

__all__ = [
    "EXIT_PARTIAL",
    "console",
    "dataset_options",
    "echo_json",
    "fail_partial",
    "ms",
    "open_rig",
    "rig_options",
    "session_of",
]

#: Exit status when some cameras failed and the others completed.
EXIT_PARTIAL = 3

#: Where the commands print; wide enough for the tables when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def rig_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--registry``, ``--wait``, ``--expect`` and the key options (``--keys``, ``--secure``,
    ``--registry-key``: read by :func:`open_rig`), the options of every command that opens a rig."""
    options = [
        click.option(
            "--registry",
            default=DEFAULT_REGISTRY_URL,
            show_default=True,
            envvar="PLANTIMAGER_REGISTRY",
            metavar="URL",
            help="Device registry the cameras and turntables register with (env PLANTIMAGER_REGISTRY).",
        ),
        click.option(
            "--wait",
            type=click.FloatRange(0.1, 600),
            default=3.0,
            show_default=True,
            help="Seconds to wait for the registry and the cameras to answer.",
        ),
        click.option(
            "--expect",
            type=click.IntRange(0),
            default=0,
            help="Wait (up to --wait) until at least this many cameras are present.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return key_options()(func)


def dataset_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--dataset`` and ``--captures``, the options of commands that work on a session folder."""
    options = [
        click.option(
            "--dataset",
            type=click.Path(path_type=Path),
            envvar="PLANTIMAGER_DATASET",
            default=None,
            help="The session folder (default: the current session under --captures).",
        ),
        click.option(
            "--captures",
            type=click.Path(path_type=Path),
            envvar="PLANTIMAGER_CAPTURES",
            default=DEFAULT_CAPTURES,
            show_default=True,
            help="Folder holding one folder per session.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextlib.contextmanager
def open_rig(registry: str, wait: float, expect: int, **kwargs: Any) -> Iterator[Rig]:
    """Open a rig on ``registry`` (with the keys the options ask for) and wait for it as the options say;
    a ClickException if it is not there."""
    kwargs.setdefault("keys", keyring_of())
    try:
        with Rig(registry, **kwargs) as rig:
            if not rig.wait_ready(wait) and not rig.connected:
                if rig.keys is None:
                    hint = "; a secured registry needs --keys DIR or --secure"
                else:  # a secured registry drops a key it does not trust without a word
                    hint = (
                        f"; or it does not trust this key ({rig.keys.key_id}): on its host, "
                        "`plantimager keys trust` this host's public key (`plantimager keys show`)"
                    )
                raise click.ClickException(
                    f"the registry at {registry} did not answer within {wait:g} s "
                    f"(is it running? see `plantimager registry` or `plantimager demo`{hint})"
                )
            if expect and not rig.wait_for_cameras(expect, wait):
                raise click.ClickException(f"only {len(rig.cameras())} of {expect} cameras after {wait:g} s")
            yield rig
    except RigError:
        raise
    except PlantImagerError as exc:  # ValidationError, a dataset in use...
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def session_of(dataset: Path | None, captures: Path, new: bool) -> Iterator[Path]:
    """The folder a command works on: ``--dataset``, else the session under ``--captures`` (a new one
    with ``--new-session``), removed again if the command is refused before capturing into it."""
    if dataset is not None:
        yield dataset
        return
    with contextlib.ExitStack() as stack:
        try:
            folder = stack.enter_context(session_for(captures, new=new))
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
        yield folder


def fail_partial(error: RigError, what: str) -> None:
    """Print the cameras that failed and why, and exit with :data:`EXIT_PARTIAL`."""
    console.print(f"[bold red]{what}: {len(error.failures)} camera(s) failed[/]")
    table = Table("camera", "reason", show_edge=False)
    for camera, reason in sorted(error.failures.items()):
        table.add_row(camera, reason)
    console.print(table)
    raise click.exceptions.Exit(EXIT_PARTIAL)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=1, default=str))


def ms(value: float | None, *, signed: bool = False) -> str:
    """Format milliseconds for a table (``-`` when unknown; with ``signed``, ``+`` for positive values)."""
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
