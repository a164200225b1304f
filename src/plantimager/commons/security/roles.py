"""What a key may do: the roles of the keys a server trusts, in increasing order of power."""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ValidationError

__all__ = ["Role"]


class Role(enum.IntEnum):
    """The role of a trusted key; a role may do everything a lower one may.

    ``VIEWER``
        Lists cameras, reads status and properties, watches previews.
    ``DEVICE``
        What a viewer may, and registering itself with a registry: the role of a camera node's or a
        turntable's key in the controller's trust.
    ``OPERATOR``
        Everything: captures, configures, downloads, releases, shuts down.
    """

    VIEWER = 1
    DEVICE = 2
    OPERATOR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Any) -> Role:
        """Return the role named ``value`` (``"viewer"``, ``"device"``, ``"operator"``) or given as a Role.

        Raises
        ------
        ValidationError
            If ``value`` names no role; the message lists the roles.
        """
        if isinstance(value, Role):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(str(role) for role in cls)
        raise ValidationError(f"unknown role {value!r}: expected one of {names}")
