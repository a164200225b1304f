"""``plantimager web``: the web page of a rig, served until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from plantimager.commons.errors import PlantImagerError
from plantimager.rig import DEFAULT_REGISTRY_URL, CallLimits, Rig
from plantimager.rig.session import DEFAULT_CAPTURES

__all__ = ["web"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@click.command("web")
@click.option(
    "--registry",
    default=DEFAULT_REGISTRY_URL,
    show_default=True,
    envvar="PLANTIMAGER_REGISTRY",
    metavar="URL",
    help="Device registry the cameras register with (env PLANTIMAGER_REGISTRY).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve the page on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port of the page (0: picked by the system).",
)
@click.option(
    "--captures",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PLANTIMAGER_CAPTURES",
    default=DEFAULT_CAPTURES,
    show_default=True,
    help="Folder holding one folder per session (env PLANTIMAGER_CAPTURES).",
)
@click.option(
    "--dataset",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PLANTIMAGER_DATASET",
    default=None,
    help="Capture into this folder instead of the current session (env PLANTIMAGER_DATASET).",
)
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Nodes downloading at once."
)
@click.option(
    "--health-interval",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds of silence after which a camera node is pinged (how soon a dead one shows).",
)
def web(
    registry: str,
    host: str,
    port: int,
    captures: Path,
    dataset: Path | None,
    jobs: int,
    health_interval: float,
) -> None:
    """Serve the web page of a rig: live cameras and previews, capture, download, settings, shutdown.

    The page listens on 127.0.0.1 unless --host says otherwise; it has no login, so serve it on
    a network you trust. Ctrl-C or SIGTERM stops it.
    """
    from plantimager.web import WebServer, create_app  # the web stack loads only for this command

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping the web page", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        limits = CallLimits(call=3000)
        with Rig(registry, jobs=jobs, limits=limits, health_interval=health_interval) as rig:
            try:
                server = WebServer(create_app(rig, captures=captures, dataset=dataset), host, port)
            except OSError as exc:
                raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
            try:
                server.start()
                click.echo(f"serving the rig of {registry} at {server.url}/")
                click.echo("Ctrl-C stops it.")
                stop.wait()
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                server.stop()
    except PlantImagerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("web page stopped")
