"""Runtime checking and coercion of values against declared type specs.

Signal arguments and property values arrive as JSON, so a declared ``tuple[int, int]`` receives
``[10, 20]`` and a ``CameraMode`` receives ``"VIDEO"``. :func:`is_instance_of_generic` tells whether a
value already fits a spec and :func:`coerce_to_generic` converts it when it can be done without
losing information.

Both keep the rules of the upstream plantimager project (plain classes use ``isinstance``, so
``True`` fits ``int``; unions and tuples of specs accept any member; containers are checked item by
item; conversions are tried in declaration order) and are stricter where upstream was wrong:

* a fixed-length ``tuple[A, B]`` checks the length;
* ``Literal[...]``, enums, ``Optional``/``X | None``, ``Annotated`` and ``None`` are supported;
* ``None`` is never converted into anything, only accepted where the spec admits it;
* text becomes ``bool`` only from ``true/false/1/0/yes/no/on/off`` (any case), an int only from 0/1;
* a float with a fractional part is never truncated to ``int``;
* text is produced only from numbers, never from ``None``, containers or bytes;
* text and mappings are never split into a list, set or tuple;
* nesting deeper than :data:`MAX_SPEC_DEPTH` levels raises ``TypeError``, not ``RecursionError``.
"""

from __future__ import annotations

import enum
import inspect
import numbers
import reprlib
import types
from collections import abc
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

__all__ = ["MAX_SPEC_DEPTH", "coerce_to_generic", "is_instance_of_generic"]

MAX_SPEC_DEPTH = 32
"""How many levels a check or a coercion may descend into a spec (and the value) before giving up."""

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_TEXT_TYPES = (str, bytes, bytearray)
_NONE_TYPE = type(None)

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40
_short.maxlevel = 3


class _TooDeepError(TypeError):
    """Raised when the nesting limit is exceeded; never swallowed by union alternatives."""


def _guard(depth: int) -> None:
    if depth > MAX_SPEC_DEPTH:
        raise _TooDeepError(f"type spec or value nested deeper than {MAX_SPEC_DEPTH} levels")


def _describe(spec: Any, level: int = 0) -> str:
    """Return a short human-readable name for ``spec``."""
    if level > 3:
        return "..."
    if spec is None or spec is _NONE_TYPE:
        return "None"
    if isinstance(spec, tuple):
        return "(" + ", ".join(_describe(item, level + 1) for item in spec) + ")"
    if isinstance(spec, type) and get_origin(spec) is None:
        if spec.__module__ == "builtins":
            return spec.__qualname__
        return f"{spec.__module__}.{spec.__qualname__}"
    text = repr(spec)
    return text if len(text) <= 100 else text[:97] + "..."


def _fail(value: Any, spec: Any, reason: str = "") -> TypeError:
    """Build the ``TypeError`` reported when ``value`` cannot be made to fit ``spec``."""
    message = f"cannot coerce {type(value).__name__} {_short.repr(value)} to {_describe(spec)}"
    return TypeError(f"{message}: {reason}" if reason else message)


def _unsupported(spec: Any) -> TypeError:
    return TypeError(f"unsupported type spec: {_describe(spec)}")


def _literal_match(value: Any, literal: Any) -> bool:
    """Tell whether ``value`` is the literal ``literal`` (``True`` is not ``1``, ``1.0`` is not ``1``)."""
    if isinstance(value, bool) != isinstance(literal, bool):
        return False
    return isinstance(value, type(literal)) and bool(value == literal)


def is_instance_of_generic(value: Any, spec: Any) -> bool:
    """Tell whether ``value`` fits the type spec ``spec`` as it is, without any conversion.

    Parameters
    ----------
    value : Any
        The value to check.
    spec : Any
        A class, a generic alias (``list[int]``, ``dict[str, tuple[int, ...]]``...), a union
        (``int | None``, ``Optional[int]``), ``Literal[...]``, ``Annotated[...]``, ``Any``, ``None`` or a
        tuple of such specs (any of which may match).

    Returns
    -------
    bool
        ``True`` when the value fits. Plain classes use ``isinstance`` (so ``True`` fits ``int`` and a
        string enum member fits ``str``); ``tuple[A, B]`` needs exactly two items; ``tuple[T, ...]``,
        sequence and set generics need every item to fit ``T``; mapping generics check every key and
        value; other generics check only their origin class; a literal matches an equal value of the
        same type (bools and ints are told apart).

    Raises
    ------
    TypeError
        If the spec is not supported (a string forward reference, a ``TypeVar``, ``ClassVar``...) or the
        check has to descend more than :data:`MAX_SPEC_DEPTH` levels.
    """
    try:
        return _check(value, spec, 0)
    except RecursionError as exc:
        raise TypeError(f"type spec or value nested too deeply for {_describe(spec)}") from exc


def _check(value: Any, spec: Any, depth: int) -> bool:
    _guard(depth)
    if spec is Any:
        return True
    if spec is None or spec is _NONE_TYPE:
        return value is None
    if isinstance(spec, tuple):
        return any(_check(value, item, depth + 1) for item in spec)
    origin = get_origin(spec)
    if origin is None:
        if isinstance(spec, type):
            return isinstance(value, spec)
        raise _unsupported(spec)
    args = get_args(spec)
    if origin is Union or origin is types.UnionType:
        return any(_check(value, item, depth + 1) for item in args)
    if origin is Literal:
        return any(_literal_match(value, literal) for literal in args)
    if origin is Annotated:
        return _check(value, args[0], depth + 1)
    if not isinstance(origin, type):
        raise _unsupported(spec)
    if not isinstance(value, origin):
        return False
    if not args:
        return True
    if issubclass(origin, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_check(item, args[0], depth + 1) for item in value)
        return len(value) == len(args) and all(
            _check(item, item_spec, depth + 1) for item, item_spec in zip(value, args, strict=True)
        )
    if issubclass(origin, abc.Mapping):
        key_spec, value_spec = args if len(args) == 2 else (Any, Any)
        return all(
            _check(key, key_spec, depth + 1) and _check(item, value_spec, depth + 1)
            for key, item in value.items()
        )
    if issubclass(origin, (abc.Sequence, abc.Set)):
        return all(_check(item, args[0], depth + 1) for item in value)
    return True


def coerce_to_generic(value: Any, spec: Any) -> Any:
    """Return ``value`` converted to fit the type spec ``spec``.

    A value that already fits (see :func:`is_instance_of_generic`) is returned unchanged, as the same
    object. Otherwise, in this order:

    1. a union or a tuple of specs tries its members in declaration order, the first success wins;
    2. ``None`` is refused (it fits only specs that admit ``None``);
    3. ``Literal[...]`` returns the first literal equal to the value or to the value converted to
       that literal's type (``"5"`` gives ``5`` for ``Literal[5]``);
    4. an enum is looked up by member value, then by member name, then by the value converted to
       the type of a member's value (``"VIDEO"`` gives ``CameraMode.VIDEO``);
    5. ``bool`` accepts the words ``true/false/1/0/yes/no/on/off`` in any case and the ints 0 and 1;
       ``str`` accepts ints and floats only; ``int`` refuses floats with a fractional part; any
       other class is called with the value (a collection class refuses text);
    6. ``tuple[...]``, sequence and set generics take any iterable except text and mappings, convert
       every item (a fixed-length tuple needs the exact number of items) and rebuild the origin
       type (``list`` / ``set`` for abstract ones);
    7. mapping generics need a mapping, convert keys and values and rebuild the origin type
       (``dict`` for abstract ones); keys that collide once converted are refused;
    8. any other generic calls its origin class with the value.

    Parameters
    ----------
    value : Any
        The value to convert, typically decoded from JSON.
    spec : Any
        The type spec, as accepted by :func:`is_instance_of_generic`.

    Returns
    -------
    Any
        A value for which ``is_instance_of_generic(result, spec)`` is true.

    Raises
    ------
    TypeError
        If the value cannot be converted without loss; the message names the expected spec and the
        value's type. Also for unsupported specs and nesting deeper than :data:`MAX_SPEC_DEPTH`.
    """
    try:
        result = _coerce(value, spec, 0)
        fits = result is value or _check(result, spec, 0)
    except RecursionError as exc:
        raise TypeError(f"type spec or value nested too deeply for {_describe(spec)}") from exc
    if not fits:
        raise _fail(value, spec, f"conversion produced a {type(result).__name__}")
    return result


def _coerce(value: Any, spec: Any, depth: int) -> Any:
    _guard(depth)
    if _check(value, spec, depth):
        return value
    if isinstance(spec, tuple):
        return _coerce_first(value, spec, spec, depth)
    origin = get_origin(spec)
    args = get_args(spec)
    if origin is Union or origin is types.UnionType:
        return _coerce_first(value, args, spec, depth)
    if value is None:
        raise _fail(value, spec, "None is accepted only where the spec admits None")
    if spec is None or spec is _NONE_TYPE:
        raise _fail(value, spec)
    if origin is None:
        return _coerce_class(value, spec, depth)
    if origin is Literal:
        return _coerce_literal(value, args, spec, depth)
    if origin is Annotated:
        return _coerce(value, args[0], depth + 1)
    if issubclass(origin, tuple):
        items = _as_items(value, spec)
        if not args:
            return tuple(items)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce_items(items, [args[0]] * len(items), value, spec, depth))
        if len(items) != len(args):
            raise _fail(value, spec, f"expected {len(args)} items, got {len(items)}")
        return tuple(_coerce_items(items, args, value, spec, depth))
    if issubclass(origin, abc.Mapping):
        return _coerce_mapping(value, origin, args, spec, depth)
    if issubclass(origin, (abc.Sequence, abc.Set)):
        items = _as_items(value, spec)
        item_spec = args[0] if args else Any
        coerced = _coerce_items(items, [item_spec] * len(items), value, spec, depth)
        fallback = set if issubclass(origin, abc.Set) else list
        return _construct(fallback if inspect.isabstract(origin) else origin, coerced, value, spec)
    if origin is type or inspect.isabstract(origin):
        raise _fail(value, spec, "cannot build this kind of object from a value")
    return _construct(origin, value, value, spec)


def _coerce_first(value: Any, candidates: Iterable[Any], spec: Any, depth: int) -> Any:
    """Return the value converted to the first candidate spec that accepts it."""
    for candidate in candidates:
        try:
            return _coerce(value, candidate, depth + 1)
        except _TooDeepError:
            raise
        except TypeError:
            continue
    raise _fail(value, spec, "no alternative accepts it")


def _coerce_class(value: Any, cls: Any, depth: int) -> Any:
    """Convert ``value`` (not ``None``, not already fitting) to the plain class ``cls``."""
    if not isinstance(cls, type):
        raise _unsupported(cls)
    if issubclass(cls, enum.Enum):
        return _coerce_enum(value, cls, depth)
    if cls is bool:
        if isinstance(value, str):
            word = value.lower()
            if word in _TRUE_WORDS or word in _FALSE_WORDS:
                return word in _TRUE_WORDS
        elif isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _fail(value, cls, "expected one of true/false/1/0/yes/no/on/off or the integers 0 and 1")
    if cls is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(value, cls, "only numbers are converted to text")
    if issubclass(cls, type):
        raise _fail(value, cls, "classes are not built from values")
    if issubclass(cls, int) and isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        try:
            whole = int(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _fail(value, cls, str(exc)) from exc
        if whole != value:
            raise _fail(value, cls, "it has a fractional part")
        value = whole
    if issubclass(cls, (bytes, bytearray)) and isinstance(value, int):
        raise _fail(value, cls, "an integer is not a byte string")
    if (
        isinstance(value, _TEXT_TYPES)
        and issubclass(cls, (abc.Sequence, abc.Set))
        and not issubclass(cls, _TEXT_TYPES)
    ):
        raise _fail(value, cls, "text is not split into items")
    return _construct(cls, value, value, cls)


def _coerce_literal(value: Any, literals: tuple[Any, ...], spec: Any, depth: int) -> Any:
    """Return the first literal equal to ``value`` as is or converted to the literal's type."""
    for literal in literals:
        if _literal_match(value, literal):
            return literal
        try:
            converted = _coerce(value, type(literal), depth + 1)
        except _TooDeepError:
            raise
        except TypeError:
            continue
        if _literal_match(converted, literal):
            return literal
    raise _fail(value, spec, "it equals none of the literals")


def _coerce_enum(value: Any, cls: type[enum.Enum], depth: int) -> enum.Enum:
    """Look up an enum member by value, then by name, then by the value converted to a member's type."""
    members = list(cls)
    for member in members:
        if _literal_match(value, member.value):
            return member
    if isinstance(value, str) and value in cls.__members__:
        return cls.__members__[value]
    for member in members:
        try:
            converted = _coerce(value, type(member.value), depth + 1)
        except _TooDeepError:
            raise
        except TypeError:
            continue
        if _literal_match(converted, member.value):
            return member
    if issubclass(cls, enum.Flag) and isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            pass
    raise _fail(value, cls, "it matches no member value or name")


def _coerce_mapping(value: Any, origin: type, args: tuple[Any, ...], spec: Any, depth: int) -> Any:
    """Convert every key and value of the mapping ``value`` and rebuild it as ``origin``."""
    if not isinstance(value, abc.Mapping):
        raise _fail(value, spec, "not a mapping")
    key_spec, value_spec = args if len(args) == 2 else (Any, Any)
    result: dict[Any, Any] = {}
    for key, item in value.items():
        try:
            new_key = _coerce(key, key_spec, depth + 1)
            new_item = _coerce(item, value_spec, depth + 1)
        except _TooDeepError:
            raise
        except TypeError as exc:
            raise _fail(value, spec, f"entry {_short.repr(key)}: {exc}") from exc
        if new_key in result:
            raise _fail(value, spec, f"keys collide once converted ({_short.repr(new_key)})")
        result[new_key] = new_item
    return _construct(dict if inspect.isabstract(origin) else origin, result, value, spec)


def _as_items(value: Any, spec: Any) -> list[Any]:
    """Return the items of a non-text, non-mapping iterable as a list."""
    if isinstance(value, _TEXT_TYPES):
        raise _fail(value, spec, "text is not split into items")
    if isinstance(value, abc.Mapping):
        raise _fail(value, spec, "a mapping is not turned into a sequence")
    try:
        return list(value)
    except TypeError as exc:
        raise _fail(value, spec, "not iterable") from exc


def _coerce_items(items: list[Any], specs: Iterable[Any], value: Any, spec: Any, depth: int) -> list[Any]:
    """Convert ``items`` pairwise to ``specs``, naming the failing position on error."""
    result = []
    for index, (item, item_spec) in enumerate(zip(items, specs, strict=True)):
        try:
            result.append(_coerce(item, item_spec, depth + 1))
        except _TooDeepError:
            raise
        except TypeError as exc:
            raise _fail(value, spec, f"item {index}: {exc}") from exc
    return result


def _construct(cls: Any, argument: Any, value: Any, spec: Any) -> Any:
    """Call ``cls(argument)``, turning ``ValueError``/``TypeError``/``OverflowError`` into ``TypeError``."""
    try:
        return cls(argument)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _fail(value, spec, str(exc) or type(exc).__name__) from exc
