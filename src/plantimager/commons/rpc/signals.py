"""``RPCSignal``: a small publish-subscribe signal whose arguments are type-checked.

A signal declared in a class body is a descriptor: each instance gets its own copy on first
access, so connecting a handler to ``camera_a.modeChanged`` never affects ``camera_b``. This holds
for signals inherited from any base class, however deep.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .typecheck import coerce_to_generic, is_instance_of_generic

__all__ = ["RPCSignal"]

logger = logging.getLogger(__name__)

_Ref = Callable[..., Any] | weakref.WeakMethod | weakref.ref


class RPCSignal:
    """A signal that calls its connected callables with the arguments it is emitted with.

    Parameters
    ----------
    *arg_types
        Type specification of each positional argument (``int``, ``tuple[int, int]``,
        ``dict``, ``Literal["a", "b"]``, ...). Emitting checks the arguments against them and
        coerces values that can be converted safely (a JSON list to a ``tuple[int, int]``).

    Attributes
    ----------
    arg_types : tuple
        The argument specifications given at construction.
    connections : list
        Connected callables, or weak references (``weakref.WeakMethod`` / ``weakref.ref``) to them.
    name : str or None
        The attribute name of the signal when it is declared in a class body.

    Examples
    --------
    >>> sig = RPCSignal(int)
    >>> seen = []
    >>> sig.connect(seen.append)
    >>> sig.emit("3")
    >>> seen
    [3]
    """

    def __init__(self, *arg_types: Any) -> None:
        self.arg_types: tuple[Any, ...] = arg_types
        self.connections: list[_Ref] = []
        self.name: str | None = None
        self._lock = threading.Lock()

    # -- descriptor protocol: one signal object per instance ------------------------------------
    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> RPCSignal:
        if obj is None or self.name is None:
            return self
        clone = RPCSignal(*self.arg_types)
        clone.name = self.name
        # Non-data descriptor: the instance attribute shadows us from now on.
        return obj.__dict__.setdefault(self.name, clone)

    def __repr__(self) -> str:
        types = ", ".join(getattr(t, "__name__", repr(t)) for t in self.arg_types)
        return f"<RPCSignal {self.name or '?'}({types}) with {len(self.connections)} connection(s)>"

    # -- connections ----------------------------------------------------------------------------
    def connect(self, conn: _Ref) -> None:
        """Connect a callable (or a weak reference to one) to the signal.

        Parameters
        ----------
        conn : callable or weakref.WeakMethod or weakref.ref
            Called with the signal's arguments on every emission. A weak reference does not keep
            its target alive; once the target is collected it is dropped silently.

        Raises
        ------
        TypeError
            If ``conn`` is neither callable nor a weak reference.

        Notes
        -----
        Connecting the same object twice has no effect.
        """
        if not (callable(conn) or isinstance(conn, weakref.ref)):
            raise TypeError(f"cannot connect a {type(conn).__name__} to a signal: it is not callable")
        with self._lock:
            if conn not in self.connections:
                self.connections.append(conn)

    def disconnect(self, conn: _Ref | None = None) -> None:
        """Disconnect ``conn``, or every connection when ``conn`` is None.

        Raises
        ------
        ValueError
            If ``conn`` is not connected.
        """
        with self._lock:
            if conn is None:
                self.connections.clear()
                return
            try:
                self.connections.remove(conn)
            except ValueError:
                raise ValueError(f"{conn!r} is not connected to {self!r}") from None

    # -- emission -------------------------------------------------------------------------------
    def validate_args(self, *args: Any, coerce: bool = False) -> tuple[Any, ...]:
        """Check ``args`` against :attr:`arg_types`, optionally coercing them.

        Parameters
        ----------
        *args
            The arguments to check.
        coerce : bool
            When True, an argument of the wrong type is converted if that can be done safely.

        Returns
        -------
        tuple
            The (possibly coerced) arguments.

        Raises
        ------
        RuntimeError
            If the number of arguments differs from the number of declared types.
        TypeError
            If an argument does not match its type (and cannot be coerced when ``coerce``).
        """
        if len(args) != len(self.arg_types):
            raise RuntimeError(
                f"signal {self.name or '?'} takes {len(self.arg_types)} argument(s), got {len(args)}"
            )
        out = []
        for index, (value, spec) in enumerate(zip(args, self.arg_types, strict=True)):
            if is_instance_of_generic(value, spec):
                out.append(value)
            elif coerce:
                try:
                    out.append(coerce_to_generic(value, spec))
                except TypeError as exc:
                    raise TypeError(f"signal {self.name or '?'} argument {index}: {exc}") from None
            else:
                raise TypeError(
                    f"signal {self.name or '?'} argument {index} must be {_spec_name(spec)}, "
                    f"got {type(value).__name__}"
                )
        return tuple(out)

    def emit(self, *args: Any) -> None:
        """Call every connected callable with ``args``.

        The arguments are first checked (and safely coerced) against :attr:`arg_types` when types
        were declared. Weak references whose target is gone are dropped. An exception raised by a
        connected callable propagates to the caller of ``emit``.

        Raises
        ------
        RuntimeError, TypeError
            See :meth:`validate_args`.
        """
        if self.arg_types:
            args = self.validate_args(*args, coerce=True)
        with self._lock:
            targets = list(self.connections)
        dead = []
        for conn in targets:
            if isinstance(conn, weakref.ref):
                func = conn()
                if func is None:
                    dead.append(conn)
                    continue
            else:
                func = conn
            func(*args)
        if dead:
            with self._lock:
                self.connections[:] = [c for c in self.connections if c not in dead]


def _spec_name(spec: Any) -> str:
    return getattr(spec, "__name__", None) or repr(spec)
