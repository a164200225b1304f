"""``plantimager demo``: a registry, simulated camera nodes and a controller on this machine."""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from plantimager.cli.options import parse_resolution
from plantimager.commons.errors import PlantImagerError
from plantimager.commons.security import KeyRing
from plantimager.demo import Demo
from plantimager.rig import DEFAULT_REGISTRY_URL
from plantimager.rig.session import DEFAULT_CAPTURES
from plantimager.turntable.dummy import DEFAULT_SPEED
from plantimager.turntable.runner import run_turntable

__all__ = ["demo"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Registry name of the demo's simulated turntable.
TURNTABLE_NAME = "turntable"
_TURNTABLE_WAIT_S = 10.0


def _start_turntable(
    registry_url: str, speed: float, stop: threading.Event, keys: KeyRing | None
) -> threading.Thread:
    """Serve the simulated turntable on a thread until ``stop`` is set; return once it registered."""
    registered = threading.Event()
    failed: list[BaseException] = []

    def on_registered(name: str) -> None:
        click.echo(f"turntable registered as {name}" if name else "turntable: registry unreachable")
        registered.set()

    def serve() -> None:
        try:
            run_turntable(
                speed=speed,
                registry=registry_url,
                bind="tcp://127.0.0.1:0",
                name=TURNTABLE_NAME,
                stop=stop,
                on_registered=on_registered,
                keys=keys,
            )
        except BaseException as exc:
            failed.append(exc)
            registered.set()

    thread = threading.Thread(target=serve, name="demo-turntable", daemon=True)
    thread.start()
    if not registered.wait(_TURNTABLE_WAIT_S) or failed:
        stop.set()
        thread.join(_TURNTABLE_WAIT_S)
        raise click.ClickException(
            f"the simulated turntable did not start: {failed[0] if failed else 'timeout'}"
        )
    return thread


@click.command("demo")
@click.option(
    "--nodes", type=click.IntRange(1, 64), default=8, show_default=True, help="Camera node processes."
)
@click.option("--cameras", type=click.IntRange(1, 8), default=1, show_default=True, help="Cameras per node.")
@click.option(
    "--captures",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CAPTURES,
    show_default=True,
    help="Where captures go (the nodes' spools are kept in its .demo folder).",
)
@click.option(
    "--registry-port",
    type=click.IntRange(0, 65535),
    default=5555,
    show_default=True,
    help="Registry port on 127.0.0.1 (0: picked by the system).",
)
@click.option(
    "--resolution", callback=parse_resolution, metavar="WxH", help="Still resolution of every camera."
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the cameras.",
)
@click.option("--web/--no-web", default=True, show_default=True, help="Serve the web page.")
@click.option(
    "--turntable/--no-turntable",
    default=True,
    show_default=True,
    help="Stand the plant on a simulated turntable (for `plantimager rig scan`).",
)
@click.option(
    "--turntable-speed",
    type=click.FloatRange(1, 3600),
    default=DEFAULT_SPEED,
    show_default=True,
    help="Speed of the simulated turntable, degrees per second.",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port of the web page on 127.0.0.1 (0: picked by the system).",
)
@click.option(
    "--secure",
    is_flag=True,
    help="Run everything over CurveZMQ, each node with a key pair of its own, made in a temporary "
    "folder for this run (as on a real rig; see docs/security.md).",
)
def demo(
    nodes: int,
    cameras: int,
    captures: Path,
    registry_port: int,
    resolution: tuple[int, int] | None,
    timeout: float,
    web: bool,
    web_port: int,
    turntable: bool,
    turntable_speed: float,
    secure: bool,
) -> None:
    """Run a whole rig on this machine: registry, simulated cameras (one process per node), controller
    and its web page.

    Ctrl-C or SIGTERM stops everything it started.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping the demo", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    the_demo = Demo(
        captures,
        nodes=nodes,
        cameras_per_node=cameras,
        registry_port=registry_port,
        resolution=resolution,
        web_port=web_port if web else None,
        say=click.echo,
        turntable=TURNTABLE_NAME if turntable else None,
        secure=secure,
    )
    table_stop = threading.Event()
    table_thread: threading.Thread | None = None
    try:
        try:
            the_demo.start(timeout)
        except PlantImagerError as exc:
            raise click.ClickException(str(exc)) from None
        if turntable:
            table_thread = _start_turntable(the_demo.registry_url, turntable_speed, table_stop, the_demo.keys)
        registry_option = []
        if the_demo.registry_url != DEFAULT_REGISTRY_URL:
            registry_option = ["--registry", the_demo.registry_url]
        if the_demo.keys is not None:
            registry_option += ["--keys", str(the_demo.keys.folder)]
        captures_option = []
        if captures.expanduser().absolute() != DEFAULT_CAPTURES.absolute():
            captures_option = ["--captures", str(the_demo.captures)]
        click.echo("")
        click.echo("In another terminal (with the virtual environment active):")
        for command, uses_captures, what in (
            ("list", False, "the cameras (--watch: follow arrivals and departures)"),
            ("capture", True, "fire every camera at the same instant"),
            ("download", True, "fetch the images into the session folder"),
            ("status", True, "nodes, spools, what the cameras still owe"),
            *(
                [("scan --positions 8", True, "turn the table to 8 positions, capture at each")]
                if turntable
                else []
            ),
        ):
            options = registry_option + (captures_option if uses_captures else [])
            extra = "".join(f" {shlex.quote(option)}" for option in options)
            click.echo(f"  plantimager rig {command}{extra}")
            click.echo(f"      {what}")
        click.echo("Ctrl-C stops the demo.")
        count = len(the_demo.rig.cameras()) if the_demo.rig else 0
        click.echo(
            f"ready: {count} camera(s) on {nodes} node(s), registry {the_demo.registry_url}, "
            f"captures {the_demo.captures}"
        )
        the_demo.watch(stop)
    finally:
        click.echo("stopping the demo")
        table_stop.set()
        if table_thread is not None:
            table_thread.join(_TURNTABLE_WAIT_S)
        the_demo.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("demo stopped")
