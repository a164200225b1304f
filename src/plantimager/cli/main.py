"""The ``plantimager`` command group.

Each subcommand lives in its own module of this package and is added to :data:`main` in
:func:`_add_commands`. Logging is configured here, and only here (``-v`` / ``-q``).
"""

from __future__ import annotations

import importlib
import logging

import click

__all__ = ["main"]

#: module name -> attribute holding the click command, added in this order.
_COMMANDS = {
    "registry": "registry",
    "camera": "camera",
    "turntable": "turntable",
    "rig": "rig",
    "demo": "demo",
    "web": "web",
    "dataset": "dataset",
    "keys": "keys",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="plantimager")
def main(verbose: int, quiet: bool) -> None:
    """Run rigs of networked cameras: registry, camera nodes, the rig controller."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _add_commands() -> None:
    for module_name, attr in _COMMANDS.items():
        module = importlib.import_module(f"plantimager.cli.{module_name}")
        main.add_command(getattr(module, attr))


_add_commands()
