"""``plantimager registry``: run a device registry until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click
import zmq

from plantimager.cli.options import key_options, keyring_of
from plantimager.commons import systemd
from plantimager.commons.errors import RegistryError, ValidationError
from plantimager.commons.registry import DEFAULT_REGISTRY_PORT, DeviceRegistry
from plantimager.commons.security import check_exposure, default_bind

__all__ = ["registry"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _parse_bind(value: str) -> tuple[str, str]:
    """Split ``tcp://HOST:PORT`` into (``tcp://HOST``, ``PORT``)."""
    if "://" not in value:
        value = f"tcp://{value}"
    scheme, rest = value.split("://", 1)
    host, sep, port = rest.rpartition(":")
    if scheme != "tcp" or not sep or not host or not (port.isdigit() or port == "*"):
        raise click.BadParameter(f"expected tcp://HOST:PORT, got {value!r}", param_hint="--bind")
    if port.isdigit() and int(port) > 65535:
        raise click.BadParameter(f"port {port} is out of range (0 to 65535)", param_hint="--bind")
    return f"{scheme}://{host}", port


@click.command("registry")
@click.option(
    "--bind",
    "bind",
    default=None,
    show_default=f"tcp://*:{DEFAULT_REGISTRY_PORT} with keys or --insecure, else tcp://127.0.0.1:{DEFAULT_REGISTRY_PORT}",
    metavar="tcp://HOST:PORT",
    help="Where devices and controllers reach the registry (port 0: picked by the OS).",
)
@click.option(
    "--events-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the change-events socket, on the same interface (default: picked by the OS).",
)
@key_options(registry_key=False)
@click.option(
    "--insecure",
    is_flag=True,
    help="Listen beyond loopback without keys: anyone on the network could register devices and list "
    "them (logged as a warning at every start).",
)
def registry(bind: str | None, events_port: int | None, insecure: bool) -> None:
    """Run a device registry, logging devices as they come and go, until Ctrl-C or SIGTERM.

    With keys (--keys DIR, --secure or PLANTIMAGER_KEYS) it talks CurveZMQ: only keys it trusts connect,
    viewers list and follow devices, device (or operator) keys register. Without keys it listens on
    127.0.0.1 (by default) or another loopback address, unless --insecure.
    """
    keys = keyring_of()
    if bind is None:
        bind = default_bind(DEFAULT_REGISTRY_PORT, secured=keys is not None, insecure=insecure)
    addr, port = _parse_bind(bind)
    try:
        check_exposure(bind, secured=keys is not None, insecure=insecure, what="registry")
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    context = zmq.Context()
    try:
        server = DeviceRegistry(context, addr, port, events_port=events_port, keys=keys)
    except RegistryError as exc:
        context.term()
        raise click.ClickException(str(exc)) from None
    server.add_new_device_callback(
        lambda device_type, addr, name: logger.info("device arrived: %s (%s) at %s", name, device_type, addr)
    )
    server.add_device_removed_callback(
        lambda device_type, addr, name: logger.info("device left: %s (%s) at %s", name, device_type, addr)
    )
    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        server.start()
        # Printed, not logged: with -q (or a port picked by the system) it is still known.
        click.echo(f"registry listening on {addr}:{server.port} (events on port {server.events_port})")
        if keys is not None:
            click.echo(f"secured: CurveZMQ with key {keys.key_id} of {keys.folder}")
        systemd.notify_ready()
        while server.is_alive() and not stop.wait(0.2):
            pass
        failed = not stop.is_set()
    finally:
        systemd.notify_stopping()
        server.stop()
        context.term()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed:
        raise click.ClickException("the registry stopped unexpectedly")
    click.echo("registry stopped")
