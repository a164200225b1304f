"""``plantimager turntable``: serve a turntable until Ctrl-C, SIGTERM or a remote stop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from plantimager.camera.names import validate_name
from plantimager.cli.options import key_options, keyring_of
from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.turntabledevice import MAX_SPEED
from plantimager.turntable.backend import available_backends
from plantimager.turntable.dummy import DEFAULT_SPEED
from plantimager.turntable.runner import DEFAULT_NAME, DEFAULT_REGISTRY_URL, run_turntable
from plantimager.turntable.server import TurntableServer

__all__ = ["turntable"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _check_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return validate_name(value, kind="turntable name")
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("turntable")
@click.option(
    "--backend",
    default="dummy",
    show_default=True,
    help=f"Turntable backend ({', '.join(available_backends())}).",
)
@click.option(
    "--speed",
    type=click.FloatRange(0, MAX_SPEED, min_open=True),
    default=DEFAULT_SPEED,
    show_default=True,
    help="Turning speed, degrees per second.",
)
@click.option(
    "--registry",
    default=DEFAULT_REGISTRY_URL,
    show_default=True,
    metavar="URL",
    help="Device registry to register with (the turntable serves even while it is unreachable).",
)
@click.option(
    "--bind",
    default=None,
    show_default="tcp://*:0 with keys or --insecure, else tcp://127.0.0.1:0",
    metavar="tcp://HOST:PORT",
    help="Where the turntable listens (port 0: picked by the system).",
)
@click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    callback=_check_name,
    help="Name proposed to the registry; letters, digits, '.', '_', '-'.",
)
@key_options()
@click.option(
    "--insecure",
    is_flag=True,
    help="Listen beyond loopback without keys: anyone on the network could drive it "
    "(logged as a warning at every start).",
)
def turntable(backend: str, speed: float, registry: str, bind: str | None, name: str, insecure: bool) -> None:
    """Serve a turntable: moves on request, its angle and its settling as signals.

    With keys (--keys DIR, --secure or PLANTIMAGER_KEYS) it talks CurveZMQ: viewers read and follow it,
    operators move it. Without keys it listens on 127.0.0.1 (by default) or another loopback address,
    unless --insecure.
    """
    keys = keyring_of()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def on_ready(server: TurntableServer) -> None:
        click.echo(f"turntable ({backend}, {speed:g} deg/s) listening on {server.address}")

    def on_registered(accepted: str) -> None:
        if accepted:
            click.echo(f"registered as {accepted} with {registry}")
        else:
            click.echo(f"registry {registry} unreachable: serving anyway, registering in the background")

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        run_turntable(
            backend=backend,
            speed=speed,
            registry=registry or None,
            bind=bind,
            name=name,
            stop=stop,
            on_ready=on_ready,
            on_registered=on_registered,
            keys=keys,
            insecure=insecure,
        )
    except (PlantImagerError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("turntable stopped")
