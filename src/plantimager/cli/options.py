"""Option parsing shared by the ``plantimager`` subcommands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from plantimager.commons.errors import ValidationError
from plantimager.commons.security import KEYS_ENV, KeyRing, keys_dir

__all__ = ["REGISTRY_KEY_ENV", "key_options", "keyring_of", "parse_resolution"]

#: Environment variable naming the registry's public key (``--registry-key``).
REGISTRY_KEY_ENV = "PLANTIMAGER_REGISTRY_KEY"
_META = "plantimager.keys"

F = TypeVar("F", bound=Callable[..., Any])


def parse_resolution(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    """Click callback turning ``WIDTHxHEIGHT`` (e.g. ``1280x960``) into ``(width, height)``.

    Raises
    ------
    click.BadParameter
        If the value is not of that form.
    """
    if value is None:
        return None
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1280x960, got {value!r}")
    return int(width), int(height)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def key_options(*, registry_key: bool = True) -> Callable[[F], F]:
    """Add ``--keys``, ``--secure`` (and ``--registry-key``): how a command finds its CURVE keys.

    The values are read back with :func:`keyring_of`; the decorated function does not receive them.
    """
    options = [
        click.option(
            "--keys",
            "keys_folder",
            type=click.Path(file_okay=False, path_type=Path),
            envvar=KEYS_ENV,
            default=None,
            expose_value=False,
            callback=_remember,
            help=f"Key folder: talk CurveZMQ with this host's keys from it (env {KEYS_ENV}; "
            "see `plantimager keys`).",
        ),
        click.option(
            "--secure",
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="Talk CurveZMQ with the keys of the default key folder (~/.config/plantimager/keys).",
        ),
    ]
    if registry_key:
        options.append(
            click.option(
                "--registry-key",
                envvar=REGISTRY_KEY_ENV,
                default=None,
                metavar="NAME|KEY|FILE",
                expose_value=False,
                callback=_remember,
                help="With keys: the registry's public key, as a trusted key's name, its Z85 text or its "
                f".key file (env {REGISTRY_KEY_ENV}; default: this host's own key, for a registry run "
                "here).",
            )
        )

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def keyring_of(ctx: click.Context | None = None) -> KeyRing | None:
    """The keys the options of :func:`key_options` ask for, or None for plaintext.

    Raises
    ------
    click.ClickException
        If the key folder has no usable key pair, or ``--registry-key`` names no key.
    click.UsageError
        If ``--registry-key`` is given without keys.
    """
    ctx = ctx or click.get_current_context()
    values = ctx.meta.get(_META, {})
    folder, secure, registry = values.get("keys_folder"), values.get("secure"), values.get("registry_key")
    if folder is None and not secure:
        if registry:
            raise click.UsageError("--registry-key goes with keys: give --keys DIR or --secure")
        return None
    try:
        return KeyRing(keys_dir(folder), registry_key=registry)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
