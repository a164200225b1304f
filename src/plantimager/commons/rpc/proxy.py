"""The methods and properties an :class:`~plantimager.commons.rpc.client.RPCClient` grows for an interface.

:meth:`RPCClient.register_interface` gives the client class one proxy per method and property the interface
declares; each proxy packs its arguments the way upstream does and goes through the client's request path.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import InterfaceError
from .properties import RPCProperty

__all__ = ["ArgPacker", "method_proxy", "property_proxy"]


class ArgPacker:
    """Turns a proxy call into wire ``args``/``kwargs`` like upstream: named parameters positionally,
    defaults applied; keyword-only and ``**kwargs`` parameters in ``kwargs``."""

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        params = list(inspect.signature(func).parameters.values())[1:]
        self.signature = inspect.Signature(params)
        self.name = name
        self.positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.simple = all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self.defaults = [p.default for p in self.positional]

    def pack(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        n = len(args)
        if self.simple and not kwargs and n <= len(self.positional):
            tail = self.defaults[n:]
            if inspect.Parameter.empty not in tail:
                return [*args, *tail], {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        wire_args: list[Any] = []
        wire_kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            value = bound.arguments.get(param.name)
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                wire_args.append(value)
            elif param.kind is param.VAR_POSITIONAL:
                wire_args.extend(value or ())
            elif param.kind is param.KEYWORD_ONLY:
                wire_kwargs[param.name] = value
            else:
                wire_kwargs.update(value or {})
        return wire_args, wire_kwargs


def method_proxy(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    packer = ArgPacker(func, name)

    def proxy(self: Any, *args: Any, **kwargs: Any) -> Any:
        wire_args, wire_kwargs = packer.pack(args, kwargs)
        return self._call(name, wire_args, wire_kwargs)

    functools.update_wrapper(proxy, func)
    proxy.__isabstractmethod__ = False  # type: ignore[attr-defined]
    return proxy


def property_proxy(name: str, declared: RPCProperty) -> RPCProperty:
    def fget(self: Any) -> Any:
        return self._get_property(name)

    def fset(self: Any, value: Any) -> None:
        if declared.fset is None:
            raise InterfaceError(f"property {name!r} is read-only")
        self._set_property(name, value)

    fget.__name__ = fset.__name__ = name
    return RPCProperty(fget, fset, doc=declared.__doc__, notify=declared.notify)
