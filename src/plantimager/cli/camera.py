"""``plantimager camera``: run a camera node until Ctrl-C, SIGTERM or a remote shutdown.

Under systemd (``Type=notify``) the node reports ``READY=1`` once it serves and has registered (or
keeps retrying in the background), and ``STOPPING=1`` when it stops; the serve loop feeds the
watchdog (see :mod:`plantimager.commons.watchdog`).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from plantimager.camera.backend import available_backends
from plantimager.camera.capture import DEFAULT_SETTLE_MS, MAX_SETTLE_MS
from plantimager.camera.names import validate_name
from plantimager.camera.node import MAX_LATE_S, CameraNodeServer
from plantimager.camera.runner import DEFAULT_REGISTRY_URL, default_spool_dir, run_node
from plantimager.cli.options import key_options, keyring_of, parse_resolution
from plantimager.commons import systemd
from plantimager.commons.errors import PlantImagerError, ValidationError

__all__ = ["camera"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _check_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_name(value, kind="node name")
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_backend_options(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"expected KEY=VALUE such as hflip=true, got {item!r}")
        try:
            options[key] = json.loads(raw)  # numbers, true/false, [lists]...
        except ValueError:
            options[key] = raw  # anything else is a string
        if isinstance(options[key], list):
            options[key] = tuple(options[key])
    return options


@click.command("camera")
@click.option(
    "--backend",
    default="dummy",
    show_default=True,
    help=f"Camera backend ({', '.join(available_backends())}).",
)
@click.option("--cameras", type=click.IntRange(1, 64), default=1, show_default=True, help="Cameras to serve.")
@click.option(
    "--registry",
    default=DEFAULT_REGISTRY_URL,
    show_default=True,
    metavar="URL",
    help="Device registry to register with (the node serves even while it is unreachable).",
)
@click.option(
    "--spool",
    "spool_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_spool_dir,
    show_default="~/.local/share/plantimager/spool",
    help="Folder keeping captures until the controller releases them.",
)
@click.option(
    "--bind",
    default=None,
    show_default="tcp://*:0 with keys or --insecure, else tcp://127.0.0.1:0",
    metavar="tcp://HOST:PORT",
    help="Where the node listens (port 0: picked by the system).",
)
@click.option(
    "--stream-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the MJPEG previews (0: picked by the system).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="This node's state folder, where its id is kept; one per node (default: "
    "$STATE_DIRECTORY, else ~/.local/state/plantimager).",
)
@click.option("--allow-poweroff", is_flag=True, help="Let a remote shutdown power this host off.")
@click.option(
    "--name",
    default=None,
    callback=_check_name,
    help="Name proposed to the registry (default: the node id); letters, digits, '.', '_', '-'.",
)
@click.option(
    "--settle-ms",
    type=click.FloatRange(0, MAX_SETTLE_MS),
    default=DEFAULT_SETTLE_MS,
    show_default=True,
    help="After a synchronised capture, ms to wait past the capture instant before encoding and "
    "storing (0: at once). Keeps one node's encoding from delaying another's firing on a shared host.",
)
@click.option(
    "--max-late",
    type=click.FloatRange(0, 3600),
    default=MAX_LATE_S,
    show_default=True,
    help="How late, in seconds, a capture instant may be and still fire (at once); later ones are refused.",
)
@click.option(
    "--resolution",
    callback=parse_resolution,
    default=None,
    metavar="WxH",
    help="Initial still resolution of every camera.",
)
@click.option(
    "--backend-option",
    "backend_options",
    multiple=True,
    callback=_parse_backend_options,
    metavar="KEY=VALUE",
    help="Option of the backend, repeatable; VALUE is read as JSON when it can be "
    "(e.g. hflip=true, buffer_count=1, 'controls={\"AfMode\": 2}').",
)
@key_options()
@click.option(
    "--insecure",
    is_flag=True,
    help="Listen beyond loopback without keys: anyone on the network could capture, download and "
    "shut the node down (logged as a warning at every start).",
)
def camera(
    backend: str,
    cameras: int,
    registry: str,
    spool_dir: Path,
    bind: str | None,
    stream_port: int,
    state_dir: Path | None,
    allow_poweroff: bool,
    name: str | None,
    settle_ms: float,
    max_late: float,
    resolution: tuple[int, int] | None,
    backend_options: dict[str, Any],
    insecure: bool,
) -> None:
    """Serve this host's cameras: synchronised captures into a spool, previews, settings.

    With keys (--keys DIR, --secure or PLANTIMAGER_KEYS), everything travels over CurveZMQ: only keys
    this host trusts connect, a viewer key may only list, read and watch previews, an operator key
    may do everything. Without keys the node listens on 127.0.0.1 (by default) or another loopback
    address, unless --insecure.
    """
    keys = keyring_of()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()  # STOPPING=1 is sent below, not from a signal handler (notify() takes a lock)

    def on_ready(node: CameraNodeServer) -> None:
        click.echo(f"node {node.node_id} listening on {node.address}")
        if keys is not None:
            click.echo(f"secured: CurveZMQ with key {keys.key_id} of {keys.folder}")
        for slot, url in zip(node.slots, node.stream_urls(), strict=False):
            click.echo(f"stream {slot.name}: {url}")
        click.echo(f"spool {node.spool.root}")
        if not registry:
            systemd.notify_ready()

    def on_registered(accepted: str) -> None:
        if accepted:
            click.echo(f"registered as {accepted} with {registry}")
        else:
            click.echo(f"registry {registry} unreachable: serving anyway, registering in the background")
        systemd.notify_ready()  # serving, and registered or retrying

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        run_node(
            spool_dir,
            backend=backend,
            cameras=cameras,
            registry=registry or None,
            bind=bind,
            stream_port=stream_port,
            state_dir=state_dir,
            allow_poweroff=allow_poweroff,
            name=name,
            resolution=resolution,
            backend_options=backend_options,
            settle_ms=settle_ms,
            max_late=max_late,
            stop=stop,
            on_ready=on_ready,
            on_registered=on_registered,
            keys=keys,
            insecure=insecure,
        )
    except (PlantImagerError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        systemd.notify_stopping()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("node stopped")
