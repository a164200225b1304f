"""Numbers that come from outside (a request, a node's answer, a file): finite and real, never a bool.

JSON decoders, msgpack and Python itself let ``True``, ``NaN`` and ``inf`` pass where a number is
expected (``bool`` is an ``int``; ``float("nan")`` is a ``float``), and each then fails far from where
it came in: a NaN angle turns a table to nowhere, ``True`` becomes a 1 ms offset. Every check of such
a number goes through here, so that they all accept and refuse the same things.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["finite", "is_finite"]


def is_finite(value: object) -> bool:
    """Whether ``value`` is a finite real number, not a ``bool``, NaN or infinite.

    Any real number counts (``int``, ``float``, and NumPy's scalars, which camera libraries
    return), but not a ``bool`` (an ``int`` in Python) nor a string that looks like a number.

    Examples
    --------
    >>> is_finite(3), is_finite(2.5), is_finite(True), is_finite(float("nan")), is_finite("4")
    (True, True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def finite(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (see :func:`is_finite`), else None.

    Examples
    --------
    >>> finite(3), finite(float("inf")), finite(None)
    (3.0, None, None)
    """
    return float(value) if is_finite(value) else None  # type: ignore[arg-type]
