"""``plantimager web``: the web page of a rig, served until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from plantimager.cli.options import key_options, keyring_of
from plantimager.commons.errors import PlantImagerError
from plantimager.rig import DEFAULT_REGISTRY_URL, CallLimits, Rig
from plantimager.rig.session import DEFAULT_CAPTURES

if TYPE_CHECKING:
    from plantimager.web.accounts import AccountStore

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
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="PLANTIMAGER_WEB_ACCOUNTS",
    default=None,
    help="File of the page's accounts (env PLANTIMAGER_WEB_ACCOUNTS; default "
    "~/.config/plantimager/web-accounts.json). With any account in it, the page needs a login.",
)
@click.option(
    "--set-password",
    "set_password",
    metavar="ACCOUNT",
    default=None,
    help="Create ACCOUNT or change its password (asked for; read from stdin when not a terminal), then exit.",
)
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator"]),
    default=None,
    help="With --set-password: the account's role (a new account is a viewer unless told).",
)
@click.option("--remove-account", metavar="ACCOUNT", default=None, help="Delete ACCOUNT, then exit.")
@click.option("--list-accounts", is_flag=True, help="List the accounts and their roles, then exit.")
@click.option(
    "--session-hours",
    type=click.FloatRange(0.01, 24 * 30),
    default=12.0,
    show_default=True,
    help="Hours a login lasts.",
)
@click.option(
    "--token",
    "use_token",
    is_flag=True,
    help="Also allow a login with a token made at this start and printed with the page's address "
    "(an operator login, as Jupyter's); needs no account.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve on an address other than loopback without any account (anyone reaching the page "
    "can drive the rig).",
)
@key_options()
def web(
    registry: str,
    host: str,
    port: int,
    captures: Path,
    dataset: Path | None,
    jobs: int,
    health_interval: float,
    accounts_file: Path | None,
    set_password: str | None,
    role: str | None,
    remove_account: str | None,
    list_accounts: bool,
    session_hours: float,
    use_token: bool,
    insecure: bool,
) -> None:
    """Serve the web page of a rig: live cameras and previews, capture, download, settings, shutdown.

    The page listens on 127.0.0.1 unless --host says otherwise. Once an account exists (see
    --set-password), it asks for a login: a viewer watches, an operator also captures, downloads,
    changes settings and shuts down; --token adds an operator login by a printed link. On any
    address but loopback it refuses to start without a login unless --insecure. With keys (--keys
    DIR, --secure or PLANTIMAGER_KEYS) it drives a secured rig over CurveZMQ, previews included.
    Ctrl-C or SIGTERM stops it.
    """
    # The web stack loads only for this command.
    from plantimager.web import WebServer, create_app
    from plantimager.web.accounts import AccountStore, default_accounts_path
    from plantimager.web.exposure import check_exposure, is_loopback
    from plantimager.web.gate import WebAuth

    store = AccountStore(accounts_file or default_accounts_path())
    try:
        if _manage(store, set_password, role, remove_account, list_accounts):
            return
        token = secrets.token_urlsafe(24) if use_token else None
        auth = WebAuth(store, lifetime=session_hours * 3600, token=token) if store or token else None
        if auth is None and not insecure and not is_loopback(host):
            check_exposure(host, authenticated=False)  # refused before any connection to the rig
    except PlantImagerError as exc:
        raise click.ClickException(str(exc)) from None
    if role is not None:
        raise click.UsageError("--role goes with --set-password")

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping the web page", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        limits = CallLimits(call=3000)
        keys = keyring_of()
        with Rig(registry, jobs=jobs, limits=limits, health_interval=health_interval, keys=keys) as rig:
            try:
                app = create_app(rig, captures=captures, dataset=dataset, auth=auth)
                server = WebServer(app, host, port, insecure=insecure)
            except OSError as exc:
                raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
            try:
                server.start()
                click.echo(f"serving the rig of {registry} at {server.url}/")
                if store:
                    click.echo(f"login required: {len(store.names())} account(s) in {store.path}")
                if token is not None:
                    click.echo(f"log in with the token: {server.url}/login?token={token}")
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


def _read_password(account: str) -> str:
    if sys.stdin.isatty():
        return click.prompt(f"Password for {account}", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("no password on stdin")
    return line.rstrip("\r\n")


def _manage(
    store: AccountStore, set_password: str | None, role: str | None, remove: str | None, listing: bool
) -> bool:
    """Carry out an account command; whether there was one (then the command exits)."""
    if sum(x is not None and x is not False for x in (set_password, remove, listing or None)) > 1:
        raise click.UsageError("give one of --set-password, --remove-account, --list-accounts")
    if set_password is not None:
        account = store.set_password(set_password, _read_password(set_password), role)
        click.echo(f"account {account.name} ({account.role}) saved in {store.path}")
        return True
    if remove is not None:
        store.remove(remove)
        click.echo(f"account {remove} removed from {store.path}")
        return True
    if listing:
        names = store.names()
        for name in names:
            found = store.get(name)
            click.echo(f"{name}\t{found.role if found else '?'}")
        if not names:
            click.echo(f"no account in {store.path}: the page is open to whoever reaches it")
        return True
    return False
