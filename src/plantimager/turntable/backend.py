"""Turntable backends: what moves the stage. The server turns RPC calls into calls of these."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from plantimager.commons.errors import ValidationError

__all__ = ["TurntableBackend", "available_backends", "get_backend_factory"]

#: backend name -> "module:attribute" of its factory.
_BACKENDS = {"dummy": "plantimager.turntable.dummy:DummyTurntable"}


class TurntableBackend(ABC):
    """The motor of a turntable, as the server drives it.

    A backend turns at the speed it is given, the shorter way round, and answers where it is at
    any instant. It need not be thread-safe for moves (the server serialises them) but
    :meth:`position` and :meth:`moving` are read from several threads.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name of the backend (``"dummy"``...)."""

    @abstractmethod
    def start(self, target: float, speed: float) -> None:
        """Start turning to ``target`` (degrees in ``[0, 360)``) at ``speed`` degrees per second.

        A move under way is replaced by this one, from where the stage is.
        """

    @abstractmethod
    def position(self) -> float:
        """The angle now, in degrees in ``[0, 360)``."""

    @abstractmethod
    def moving(self) -> bool:
        """True while the stage turns."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait until the stage has stopped, at most ``timeout`` seconds; True if it has.

        Also returns (possibly False) when a new move starts, so the caller can look again.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop the motor and free the hardware; the default does nothing."""


def available_backends() -> list[str]:
    """The names of the turntable backends, sorted."""
    return sorted(_BACKENDS)


def get_backend_factory(name: str) -> Callable[..., TurntableBackend]:
    """Return the factory (class) of backend ``name``.

    Raises
    ------
    ValidationError
        If there is no backend of that name.
    """
    target = _BACKENDS.get(name)
    if target is None:
        raise ValidationError(
            f"unknown turntable backend {name!r}; available: {', '.join(available_backends())}"
        )
    module_name, _, attr = target.partition(":")
    factory: Any = getattr(importlib.import_module(module_name), attr)
    return factory
