"""Which role each request needs on a secured server, and the refusal when the caller lacks it.

Reading is open to every trusted key (a viewer): the inventory, signals, property values, and the
methods declared with ``role="viewer"``. Everything that changes state needs an operator: setting a
property, stopping the server, and every method not declared otherwise.
"""

from __future__ import annotations

from typing import Any

from ..errors import AccessDenied
from ..security import Role
from .members import Members
from .protocol import SIGNAL_CHECK, RPCEvents

__all__ = ["EVENT_ROLES", "needed_role", "refusal", "what_request"]

#: The role each request needs, by event (a method call needs the role of its method).
EVENT_ROLES: dict[str, Role] = {
    RPCEvents.GET_INVENTORY: Role.VIEWER,
    RPCEvents.INIT_SIGNALS_HANDLING: Role.VIEWER,
    SIGNAL_CHECK: Role.VIEWER,
    RPCEvents.PROPERTY_GET: Role.VIEWER,
    RPCEvents.FIND_PEER_ADDRESS: Role.VIEWER,
    RPCEvents.PROPERTY_SET: Role.OPERATOR,
    RPCEvents.STOP_SERVER: Role.OPERATOR,
}


def needed_role(event: Any, request: dict[str, Any], members: Members) -> Role:
    """The role a request needs (on every request of a secured server: kept to a few lookups).

    A call of a method the server does not have needs only a viewer, so the caller learns it does not
    exist; an unknown event needs a viewer too, for the same reason.
    """
    if event == RPCEvents.METHOD_CALL:
        name = request.get("method")
        method = members.methods.get(name) if isinstance(name, str) else None
        return Role.VIEWER if method is None else method.role
    return EVENT_ROLES.get(event, Role.VIEWER) if isinstance(event, str) else Role.VIEWER


def what_request(event: Any, request: dict[str, Any]) -> str:
    """What a request is, as refusals name it: ``start_capture()``, ``setting property 'x'``..."""
    if event == RPCEvents.METHOD_CALL:
        return f"{str(request.get('method'))[:60]}()"
    if event == RPCEvents.PROPERTY_SET:
        return f"setting property {str(request.get('property'))[:60]!r}"
    return str(event)[:40] if isinstance(event, str) else "a request"


def refusal(what: str, needed: Role, role: Role | None, key_name: str) -> AccessDenied:
    """The error refusing ``what`` to a key of role ``role`` (None: no longer trusted), naming the role."""
    if role is None:
        return AccessDenied(f"{what} refused: the key {key_name} is no longer trusted by this server")
    return AccessDenied(f"{what} needs the {needed} role; the key {key_name} has the {role} role")
