"""Key folders for the security tests: a controller, nodes, a viewer and a stranger, trusting each other
as the hosts of a real rig would (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

from plantimager.commons.security import KeyRing, Role


class RigKeys:
    """The key folders of a secured rig under ``home``.

    ``controller`` runs the registry and the rig (an operator on every node); ``viewer`` is a person
    who may only watch (a viewer on every node and on the registry); ``stranger`` is trusted by nobody.
    Every node made by :meth:`node` trusts the controller and the viewer, and the controller trusts it
    as a device.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.controller = KeyRing.init(home / "controller")
        self.viewer = KeyRing.init(home / "viewer")
        self.stranger = KeyRing.init(home / "stranger")
        self.controller.trust(text(self.viewer), Role.VIEWER, "viewer")
        self.nodes: dict[str, KeyRing] = {}

    def node(self, name: str) -> KeyRing:
        """The keys of node ``name`` (made on first use), trusted both ways."""
        if name not in self.nodes:
            ring = KeyRing.init(self.home / name)
            ring.trust(text(self.controller), Role.OPERATOR, "controller")
            ring.trust(text(self.viewer), Role.VIEWER, "viewer")
            self.controller.trust(text(ring), Role.DEVICE, name)
            self.nodes[name] = KeyRing(ring.folder, registry_key="controller")
        return self.nodes[name]

    def node_args(self, name: str) -> list[str]:
        """The options of ``plantimager camera`` giving node ``name`` its keys and the registry's key."""
        return ["--keys", str(self.node(name).folder), "--registry-key", "controller"]

    @staticmethod
    def revoke(folder: Path, name: str) -> None:
        """Revoke ``name`` in the key folder ``folder`` through a KeyRing of its own (as another process)."""
        KeyRing(folder).revoke(name)

    def secrets(self) -> list[str]:
        """Every secret key of every folder, as text (for checking that none reaches a log)."""
        rings = [self.controller, self.viewer, self.stranger, *self.nodes.values()]
        return [ring.secret_key.decode() for ring in rings]


def text(ring: KeyRing) -> str:
    """The public key of ``ring`` as Z85 text."""
    return ring.public_key.decode()
