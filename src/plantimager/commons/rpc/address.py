"""Parsing of ``tcp://host:port`` URLs and the choice of an address peers can reach."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass

__all__ = ["Endpoint", "advertised_host", "parse_url", "url_host"]

logger = logging.getLogger(__name__)

_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.%a-zA-Z]+)\]|(?P<host>[^:/\[\]]+))"
    r"(?::(?P<port>\d{1,5}|\*))?/?$"
)

#: Environment variable naming the host a server advertises when it binds a wildcard address.
ADVERTISE_ENV = "PLANTIMAGER_ADVERTISE_HOST"


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint URL.

    Attributes
    ----------
    scheme : str
        ``tcp``, ``ipc``, ``inproc``...
    host : str
        Host name, IPv4 address, IPv6 address (without brackets), ``*`` or ``0.0.0.0``.
    port : int or None
        The port, ``0`` for "any free port", or None when absent.
    """

    scheme: str
    host: str
    port: int | None = None

    @property
    def is_ipv6(self) -> bool:
        """True when the host is an IPv6 literal."""
        return ":" in self.host

    @property
    def is_wildcard(self) -> bool:
        """True when the host means "every interface"."""
        return self.host in ("*", "0.0.0.0", "::")

    def host_for_url(self) -> str:
        """The host as written in a URL (IPv6 literals in brackets)."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    def with_port(self, port: int | str) -> str:
        """The URL of this host at ``port``."""
        return f"{self.scheme}://{self.host_for_url()}:{port}"

    def __str__(self) -> str:
        base = f"{self.scheme}://{self.host_for_url()}"
        return base if self.port is None else f"{base}:{self.port}"


def parse_url(url: str) -> Endpoint:
    """Parse ``scheme://host[:port]``; hosts may contain hyphens, be IPv6 in brackets, or ``*``.

    Raises
    ------
    ValueError
        If ``url`` is not of that form (the message quotes it).
    """
    if not isinstance(url, str):
        raise ValueError(f"an endpoint URL must be a string, got {type(url).__name__}")
    match = _URL.match(url.strip())
    if not match:
        raise ValueError(f"not an endpoint URL of the form scheme://host[:port]: {url!r}")
    port = match["port"]
    port_value = None if port is None else (0 if port == "*" else int(port))
    if port_value is not None and port_value > 65535:
        raise ValueError(f"port out of range (0-65535) in endpoint URL {url!r}")
    host = match["ipv6"] or match["host"]
    return Endpoint(match["scheme"].lower(), host, port_value)


def advertised_host(bind_host: str) -> str:
    """Return a host that peers can dial for a socket bound on ``bind_host``.

    A concrete host is returned as is. For a wildcard bind (``*``, ``0.0.0.0``) the host comes
    from :data:`ADVERTISE_ENV` if set, else the first non-loopback IPv4 address of an interface
    that is up, else the machine's host name, else ``127.0.0.1``. No traffic is sent to find it.
    """
    if bind_host not in ("*", "0.0.0.0", "::"):
        return bind_host
    override = os.environ.get(ADVERTISE_ENV)
    if override:
        return override
    for addr in _interface_addresses():
        return addr
    try:
        name = socket.gethostname()
        if name and not ipaddress.ip_address(socket.gethostbyname(name)).is_loopback:
            return name
    except (OSError, ValueError):
        pass
    return "127.0.0.1"


def _interface_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of interfaces that are up, in interface order."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency, but stay usable without it
        return []
    stats = psutil.net_if_stats()
    found = []
    for name, addrs in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for addr in addrs:
            if addr.family == socket.AF_INET and not ipaddress.ip_address(addr.address).is_loopback:
                found.append(addr.address)
    return found


def url_host(host: str) -> str:
    """Return ``host`` as it stands in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host
