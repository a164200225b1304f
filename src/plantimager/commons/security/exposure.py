"""Where a server may listen without keys: on loopback only, unless its user says ``insecure``.

On a loopback address only programs of this machine reach a server, so the demo and the tests run
in plaintext with no setup. On any other address a server without keys would let anybody on the
network capture, download, release and shut down: it refuses to start unless told ``insecure``,
which is then logged as a warning at every start.
"""

from __future__ import annotations

import ipaddress
import logging

from ..errors import ValidationError

__all__ = ["bind_host", "check_exposure", "default_bind", "guard_exposure", "is_loopback"]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (a name other than ``localhost`` counts as not)."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_bind(port: int, *, secured: bool, insecure: bool = False) -> str:
    """Where a server listens when not told: every interface with keys (or ``insecure``), else loopback.

    So a server started without keys and without an address runs (on this machine only) instead of
    being refused, and one given keys is reachable by the rig at once.

    Parameters
    ----------
    port : int
        The port (0: picked by the system).
    secured : bool
        Whether the server has keys.
    insecure : bool
        Whether plaintext beyond loopback was asked for.

    Returns
    -------
    str
        ``tcp://*:PORT`` or ``tcp://127.0.0.1:PORT``.
    """
    return f"tcp://{'*' if secured or insecure else '127.0.0.1'}:{port}"


def bind_host(address: str) -> str:
    """The host of a bind address: ``tcp://HOST:PORT``, ``tcp://HOST``, ``HOST:PORT`` or ``HOST``."""
    rest = address.strip().split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    if rest.count(":") == 1:
        return rest.rsplit(":", 1)[0]
    return rest


def check_exposure(address: str, *, secured: bool, insecure: bool = False, what: str = "server") -> None:
    """Refuse to serve without keys beyond this machine.

    Parameters
    ----------
    address : str
        Where the server is to listen (a bind URL or a host).
    secured : bool
        Whether it has keys (CURVE).
    insecure : bool
        Serve in plaintext anyway (``--insecure``): logged as a warning.
    what : str
        What is started, for the messages (``camera node``, ``registry``...).

    Raises
    ------
    ValidationError
        If the host is not a loopback address, there are no keys and ``insecure`` is false; the
        message says how to get keys.
    """
    guard_exposure(
        bind_host(address),
        protected=secured,
        insecure=insecure,
        refusal=f"refusing to start the {what} on {address} without keys: anyone on that network could "
        "drive it. Create this host's keys with `plantimager keys init` and give --keys DIR (or set "
        "PLANTIMAGER_KEYS), or listen on 127.0.0.1, or give --insecure if this network is trusted",
        warning=f"the {what} listens on {address} WITHOUT keys (--insecure): anyone who can reach it can "
        "drive it",
    )


def guard_exposure(
    host: str, *, protected: bool, insecure: bool, refusal: str, warning: str, log: logging.Logger = logger
) -> None:
    """The rule every listener follows: protected, or on loopback, or ``insecure`` (with a warning).

    Raises :class:`ValidationError` with ``refusal`` when ``host`` is not a loopback address,
    nothing protects it and ``insecure`` is false; logs ``warning`` on ``log`` when ``insecure``
    lets it through.
    """
    if protected or is_loopback(host):
        return
    if not insecure:
        raise ValidationError(refusal)
    log.warning("%s", warning)
