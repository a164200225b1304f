"""``RPCProperty``: a property that can be proxied over RPC and tied to a change signal."""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from typing import Any

from .signals import RPCSignal

__all__ = ["RPCProperty"]

logger = logging.getLogger(__name__)

_MISSING = object()


class RPCProperty(property):
    """A property reachable over RPC, optionally tied to a change-notification signal.

    It is used like ``property``; ``notify`` names the signal that reports changes. By default
    the setter is responsible for emitting it; with ``auto_notify=True`` the property emits it
    itself after a set that changed the value.

    Parameters
    ----------
    fget, fset, fdel : callable, optional
        Getter, setter and deleter, as for :class:`property`.
    doc : str, optional
        Documentation; defaults to the getter's docstring.
    notify : RPCSignal or str, optional
        The change signal, or its attribute name. On an instance the per-instance signal of the
        same name is used.
    auto_notify : bool
        Emit ``notify`` with the new value after a set that changed the value.

    Examples
    --------
    The decorator form, as in an interface::

        class Lamp:
            levelChanged = RPCSignal(int)

            @RPCProperty(notify=levelChanged, auto_notify=True)
            def level(self) -> int:
                return self._level

            @level.setter
            def level(self, value: int) -> None:
                self._level = value
    """

    def __init__(
        self,
        fget: Callable[[Any], Any] | None = None,
        fset: Callable[[Any, Any], None] | None = None,
        fdel: Callable[[Any], None] | None = None,
        doc: str | None = None,
        notify: RPCSignal | str | None = None,
        auto_notify: bool = False,
    ) -> None:
        super().__init__(fget, fset, fdel, doc)
        self._notifier = notify
        self._auto_notify = auto_notify
        self._name: str | None = getattr(fget, "__name__", None)

    # ``@RPCProperty(notify=sig)`` first builds an empty property, then decorates the getter.
    def __call__(self, fget: Callable[[Any], Any]) -> RPCProperty:
        if self.fget is not None:
            raise TypeError("RPCProperty object is not callable once it has a getter")
        return self._clone(fget=fget, doc=self.__doc__ or fget.__doc__)

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def _clone(self, **changes: Any) -> RPCProperty:
        args = {
            "fget": self.fget,
            "fset": self.fset,
            "fdel": self.fdel,
            "doc": self.__doc__,
            "notify": self._notifier,
            "auto_notify": self._auto_notify,
        }
        args.update(changes)
        return type(self)(**args)

    # Keep the notification metadata when the setter/getter/deleter is attached.
    def getter(self, fget: Callable[[Any], Any]) -> RPCProperty:
        """Return a copy with ``fget`` as getter, keeping ``notify`` and ``auto_notify``."""
        return self._clone(fget=fget)

    def setter(self, fset: Callable[[Any, Any], None]) -> RPCProperty:
        """Return a copy with ``fset`` as setter, keeping ``notify`` and ``auto_notify``."""
        return self._clone(fset=fset)

    def deleter(self, fdel: Callable[[Any], None]) -> RPCProperty:
        """Return a copy with ``fdel`` as deleter, keeping ``notify`` and ``auto_notify``."""
        return self._clone(fdel=fdel)

    @property
    def notify(self) -> RPCSignal | str | None:
        """The change signal (or its name) given at construction."""
        return self._notifier

    @property
    def readonly(self) -> bool:
        """True when the property has no setter."""
        return self.fset is None

    def notifier_for(self, obj: Any) -> RPCSignal | None:
        """Return the change signal as seen from ``obj`` (its per-instance copy when declared on a class)."""
        notifier = self._notifier
        if notifier is None:
            return None
        name = notifier if isinstance(notifier, str) else notifier.name
        if name is not None:
            found = getattr(obj, name, None)
            if isinstance(found, RPCSignal):
                return found
        return notifier if isinstance(notifier, RPCSignal) else None

    def value_type(self) -> Any:
        """The declared type of the value: the setter's value annotation, else the getter's return.

        Returns ``typing.Any`` when nothing is declared or the annotation cannot be resolved.
        """
        for func, key in ((self.fset, None), (self.fget, "return")):
            if func is None:
                continue
            try:
                hints = typing.get_type_hints(func)
            except Exception as exc:  # unresolvable forward reference: treat as undeclared
                logger.warning("value of property %s is not type-checked: %s", self._name, exc)
                continue
            if key is None:
                params = [p for p in func.__code__.co_varnames[: func.__code__.co_argcount]][1:]
                key = params[0] if params else None
            if key is not None and key in hints:
                return hints[key]
        return Any

    def __set__(self, obj: Any, value: Any) -> None:
        """Set the value on ``obj``; with ``auto_notify``, emit the change signal if it changed.

        The old value is read through the getter, the setter is called, and the new value is read
        again; the signal is emitted only when they differ.
        """
        if not self._auto_notify or self.fget is None:
            super().__set__(obj, value)
            return
        old = self.fget(obj)
        super().__set__(obj, value)
        new = self.fget(obj)
        if old != new:
            signal = self.notifier_for(obj)
            if signal is not None:
                signal.emit(new)
