"""Validation of identifiers that become file or directory names on a camera node.

Data codes (chosen by the controller) and camera names end up as path components of the on-disk
spool, so they are held to a deliberately small alphabet: whatever passes :func:`validate_name` can
be joined to a directory and is guaranteed to name an entry *directly inside* that directory, on
every common file system, with no quoting.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from plantimager.commons.errors import ValidationError

__all__ = ["MAX_NAME_LENGTH", "NAME_RULE", "validate_name"]

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 128
"""Longest accepted name, in characters."""

NAME_RULE = (
    f"1 to {MAX_NAME_LENGTH} characters from A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'"
)
"""The rule, in words, quoted by every refusal."""

# First character excludes '.' (hidden files, '.', '..') and '-' (looks like a command-line option).
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

_REPR_LIMIT = 60


def _show(value: Any) -> str:
    """Return a short, printable rendering of an offending value for an error message."""
    text = repr(value)
    if len(text) <= _REPR_LIMIT:
        return text
    if isinstance(value, (str, bytes)):
        return f"{value[:40]!r}... ({len(value)} characters)"
    return f"{text[:_REPR_LIMIT]}... (truncated)"


def validate_name(value: Any, *, kind: str) -> str:
    """Check that ``value`` is safe to use as a single file-name component.

    Parameters
    ----------
    value : Any
        The candidate name, typically received from a remote peer.
    kind : str
        What the name stands for (``"data code"``, ``"camera name"``...); quoted in errors.

    Returns
    -------
    str
        ``value`` itself, unchanged, when it is acceptable.

    Raises
    ------
    ValidationError
        If ``value`` is not a ``str``, is empty or longer than :data:`MAX_NAME_LENGTH`, uses a
        character outside ``[A-Za-z0-9._-]`` (so no path separator, NUL, space or non-ASCII letter),
        or starts with ``.`` or ``-`` (which also rules out ``.`` and ``..``). The message names
        ``kind``, shows the value (shortened when huge) and states the rule.

    Examples
    --------
    >>> validate_name("cam0", kind="camera name")
    'cam0'
    """
    if not isinstance(value, str):
        raise ValidationError(
            f"invalid {kind} {_show(value)}: must be a str, not {type(value).__name__}; rule: {NAME_RULE}"
        )
    if not value:
        raise ValidationError(f"invalid {kind} '': must not be empty; rule: {NAME_RULE}")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"invalid {kind} {_show(value)}: {len(value)} characters is longer than "
            f"{MAX_NAME_LENGTH}; rule: {NAME_RULE}"
        )
    if _NAME_RE.fullmatch(value) is None:
        raise ValidationError(f"invalid {kind} {_show(value)}: must be {NAME_RULE}")
    return value
