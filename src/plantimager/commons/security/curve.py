"""``Curve``: the CURVE keys one socket is set up with."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Curve"]


@dataclass(frozen=True, slots=True)
class Curve:
    """The CURVE keys of one socket, as 40-character Z85 bytes.

    Attributes
    ----------
    public_key, secret_key : bytes
        This side's key pair.
    server_key : bytes or None
        For a client socket, the public key the server must prove it holds; None makes the socket
        a CURVE server.
    zap_domain : str
        For a server socket, the ZAP domain under which its clients' keys are checked.
    """

    public_key: bytes
    secret_key: bytes
    server_key: bytes | None = None
    zap_domain: str = ""

    @property
    def is_server(self) -> bool:
        """True for a server socket."""
        return self.server_key is None

    def __repr__(self) -> str:  # never show the secret key
        side = "server" if self.is_server else f"client of {self.server_key[:8].decode()}..."  # type: ignore[index]
        return f"Curve({side}, public {self.public_key[:8].decode()}...)"
