"""``plantimager keys``: this host's CURVE key pair and the keys it trusts, as files a user manages.

The key folder is ``--keys DIR``, else ``$PLANTIMAGER_KEYS``, else ``~/.config/plantimager/keys``
(see :mod:`plantimager.commons.security.keyring`). Servers read it as it is at each new connection,
so ``trust`` and ``revoke`` take effect without a restart.
"""

from __future__ import annotations

from pathlib import Path

import click

from plantimager.commons.errors import ValidationError
from plantimager.commons.security import KEYS_ENV, KeyRing, Role, key_id, keys_dir

__all__ = ["keys"]

_ROLES = [str(role) for role in Role]


def _ring(ctx: click.Context) -> KeyRing:
    folder: Path = ctx.obj
    try:
        return KeyRing(folder)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("keys")
@click.option(
    "--keys",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=KEYS_ENV,
    default=None,
    help=f"The key folder (env {KEYS_ENV}; default ~/.config/plantimager/keys).",
)
@click.pass_context
def keys(ctx: click.Context, folder: Path | None) -> None:
    """This host's CURVE keys and the keys it trusts (viewer, device or operator).

    \b
    plantimager keys init                      create this host's key pair
    plantimager keys show                      its public key, to give to other hosts
    plantimager keys trust pi-07.key --role device
    plantimager keys list
    plantimager keys revoke pi-07
    """
    ctx.obj = keys_dir(folder)


@keys.command("init")
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create this host's key pair (the secret file with mode 0600) and trust it as an operator."""
    try:
        ring = KeyRing.init(ctx.obj)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created the key pair {key_id(ring.public_key)} in {ring.folder}")
    click.echo(f"public key: {ring.public_key.decode()}")
    click.echo(f"give {ring.folder / 'host.key'} (or the line above) to the hosts that must trust this one")


@keys.command("show")
@click.option("--bare", is_flag=True, help="Print the public key alone (40 characters of Z85).")
@click.pass_context
def show(ctx: click.Context, bare: bool) -> None:
    """Print this host's public key (never the secret one)."""
    ring = _ring(ctx)
    if bare:
        click.echo(ring.public_key.decode())
        return
    click.echo(f"public key: {ring.public_key.decode()}")
    click.echo(f"key id:     {ring.key_id}")
    click.echo(f"file:       {ring.folder / 'host.key'}")


class _TrustCommand(click.Command):
    """``trust``, whose usage error for a key read as an option says how to give it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            # One Z85 key in 85 starts with "-": click then reads it as an unknown option.
            exc.message += '; a key starting with "-" goes after "--": trust --role viewer --name vera -- KEY'
            raise


@keys.command("trust", cls=_TrustCommand)
@click.argument("key", metavar="FILE|KEY")
@click.option("--role", type=click.Choice(_ROLES), required=True, help="What the key may do.")
@click.option("--name", default=None, help="Its name (default: the file's name without .key).")
@click.pass_context
def trust(ctx: click.Context, key: str, role: str, name: str | None) -> None:
    """Trust a public key (a .key file or its Z85 text) with a role; again, to change its role.

    Put Z85 text after "--" (a key may start with "-"): trust --role viewer --name vera -- 'KEY'.

    \b
    viewer    lists cameras, reads status and settings, watches previews
    device    a camera node or turntable: a viewer that may register with the registry
    operator  everything: capture, configure, download, release, shut down
    """
    ring = _ring(ctx)
    try:
        entry = ring.trust(key, role, name)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"trusted {entry.name} ({key_id(entry.public_key)}) as {entry.role}")


@keys.command("list")
@click.pass_context
def list_keys(ctx: click.Context) -> None:
    """List the trusted keys with their roles, then the revoked ones."""
    ring = _ring(ctx)
    entries = ring.entries()
    for entry in entries:
        click.echo(f"{entry.name}\t{'revoked' if entry.revoked else entry.role}\t{entry.public_key.decode()}")
    if not entries:
        click.echo(f"no trusted key in {ring.folder}")


@keys.command("revoke")
@click.argument("key", metavar="NAME|FILE|KEY")
@click.pass_context
def revoke(ctx: click.Context, key: str) -> None:
    """Stop trusting a key; servers refuse it from its next connection (open ones within a second)."""
    ring = _ring(ctx)
    try:
        entry = ring.revoke(key)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {entry.name} ({key_id(entry.public_key)})")
