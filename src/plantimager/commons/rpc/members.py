"""Discovery of what a class exposes over RPC: methods, properties and signals.

The whole MRO is walked, so a subclass of a concrete server exposes everything its bases expose
(upstream only looked at the class body). Names starting with ``_`` are never exposed.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..security import Role
from .properties import RPCProperty
from .signals import RPCSignal
from .typecheck import coerce_to_generic, is_instance_of_generic

__all__ = ["ArgBinder", "ExposedMethod", "Members", "collect_members", "interface_functions", "mark_remote"]

logger = logging.getLogger(__name__)

#: Marks set on functions by ``RPCServer.register_method_json`` / ``register_method_buffer``.
JSON_MARK = "_is_json_method"
BUFFER_MARK = "_is_buffer_method"
TIMEOUT_MARK = "_timeout"
ROLE_MARK = "_rpc_role"


class ArgBinder:
    """Binds wire arguments (``args`` list, ``kwargs`` object) to a function's parameters.

    Arguments with a type annotation are checked, and coerced safely when they do not match
    (JSON has no tuples: ``[640, 480]`` becomes ``(640, 480)`` for ``tuple[int, int]``).

    Parameters
    ----------
    func : callable
        The function, including its ``self`` parameter.
    label : str
        How to name the function in error messages.
    """

    def __init__(self, func: Callable[..., Any], label: str) -> None:
        self.label = label
        signature = inspect.signature(func)
        params = list(signature.parameters.values())[1:]  # drop self
        self.signature = signature.replace(parameters=params)
        self.takes_nothing = not params
        # Fast path: all parameters positional-or-keyword and given positionally, no kwargs.
        self._plain_count = len(params) if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params) else -1
        try:
            hints = typing.get_type_hints(func)
        except Exception as exc:  # unresolvable annotation: check nothing rather than refuse to serve
            logger.warning(
                "arguments of %s() are not type-checked: its annotations do not resolve (%s)", label, exc
            )
            hints = {}
        self.checks = {
            p.name: hints[p.name]
            for p in params
            if p.name in hints
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and hints[p.name] is not Any
        }

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Return ``(args, kwargs)`` ready for the call.

        Raises
        ------
        TypeError
            Naming the function and the argument that is missing, unexpected or of the wrong type.
        """
        if self.takes_nothing:
            if args or kwargs:
                raise TypeError(f"{self.label}() takes no arguments")
            return (), {}
        if not kwargs and len(args) == self._plain_count:
            return self._check_positional(args), {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.label}(): {exc}") from None
        if self.checks:
            values = bound.arguments
            for name, spec in self.checks.items():
                if name in values and not is_instance_of_generic(values[name], spec):
                    values[name] = self._coerce(name, values[name], spec)
        return bound.args, bound.kwargs

    def _check_positional(self, args: list[Any]) -> tuple[Any, ...]:
        if not self.checks:
            return tuple(args)
        values = list(args)
        for index, name in enumerate(self.signature.parameters):
            spec = self.checks.get(name)
            if spec is not None and not is_instance_of_generic(values[index], spec):
                values[index] = self._coerce(name, values[index], spec)
        return tuple(values)

    def _coerce(self, name: str, value: Any, spec: Any) -> Any:
        # Only structural conversions JSON makes necessary (arrays to tuples, strings to enums,
        # int to float...). A number is not a string: turning 5 into "5" would hide a caller's bug.
        if spec is str:
            raise TypeError(f"{self.label}() argument {name!r} must be a string, got {type(value).__name__}")
        try:
            return coerce_to_generic(value, spec)
        except TypeError as exc:
            raise TypeError(f"{self.label}() argument {name!r}: {exc}") from None


@dataclass
class ExposedMethod:
    """A method a server exposes: its name, kind, advertised timeout (ms, None = unbounded), and the
    role a caller's key needs on a secured server."""

    name: str
    buffer: bool
    timeout: int | None
    binder: ArgBinder
    role: Role = Role.OPERATOR


@dataclass
class Members:
    """What a class exposes: methods, properties and signals, by name."""

    methods: dict[str, ExposedMethod] = field(default_factory=dict)
    properties: dict[str, RPCProperty] = field(default_factory=dict)
    signals: dict[str, RPCSignal] = field(default_factory=dict)


def _public_names(cls: type, stop: tuple[type, ...]) -> list[str]:
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass in stop:
            continue
        for name in vars(klass):
            if not name.startswith("_"):
                names[name] = None
    return list(names)


def collect_members(cls: type, stop: tuple[type, ...] = ()) -> Members:
    """Collect the RPC members of a server class.

    A method is exposed when some class of the MRO marks it with a registration decorator; the
    most derived implementation is called (an override without the decorator keeps the
    registration of the base). Properties are the :class:`RPCProperty` members and signals the
    :class:`RPCSignal` members. Names come base classes first, in definition order, each
    resolved to its most derived definition.

    Parameters
    ----------
    cls : type
        The server class.
    stop : tuple of type
        Classes whose own members are not exposed (the RPC base classes).
    """
    members = Members()
    for name in _public_names(cls, stop):
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, RPCProperty):
            members.properties[name] = attr
        elif isinstance(attr, RPCSignal):
            members.signals[name] = attr
        elif inspect.isfunction(attr):
            mark = _registration(cls, name)
            if mark is not None:
                buffer, timeout, role = mark
                members.methods[name] = ExposedMethod(name, buffer, timeout, ArgBinder(attr, name), role)
    return members


def _registration(cls: type, name: str) -> tuple[bool, int | None, Role] | None:
    for klass in cls.__mro__:
        func = vars(klass).get(name)
        if func is None:
            continue
        for mark, buffer in ((BUFFER_MARK, True), (JSON_MARK, False)):
            if getattr(func, mark, False):
                return buffer, getattr(func, TIMEOUT_MARK, 10000), getattr(func, ROLE_MARK, Role.OPERATOR)
    return None


def interface_functions(interface: type) -> dict[str, Callable[..., Any]]:
    """Public functions of an interface (abstract or not), each in its most derived definition."""
    found = {}
    for name in _public_names(interface, ()):
        attr = inspect.getattr_static(interface, name)
        if inspect.isfunction(attr):
            found[name] = attr
    return found


def mark_remote(timeout: Any, mark: str, role: Role | str = Role.OPERATOR) -> Any:
    """Mark a method as remotely callable with ``mark`` (JSON or buffer), a timeout in ms and the role
    a caller needs on a secured server.

    ``timeout`` may also be the method itself, when the decorator is used bare.
    """
    needed = Role.parse(role)
    if inspect.isfunction(timeout):  # used bare: @RPCServer.register_method_json
        setattr(timeout, mark, True)
        setattr(timeout, TIMEOUT_MARK, 10000)
        setattr(timeout, ROLE_MARK, needed)
        return timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
        raise TypeError(f"timeout must be a non-negative int of milliseconds or None, got {timeout!r}")

    def decorator(method: Callable[..., Any]) -> Callable[..., Any]:
        setattr(method, mark, True)
        setattr(method, TIMEOUT_MARK, timeout)
        setattr(method, ROLE_MARK, needed)
        return method

    return decorator
