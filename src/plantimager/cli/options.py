"""Option parsing shared by the ``plantimager`` subcommands."""

from __future__ import annotations

import click

__all__ = ["parse_resolution"]


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
