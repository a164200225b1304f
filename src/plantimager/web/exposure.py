"""Whether the page may be served where it was asked to be: no open page beyond this machine.

On a loopback address (127.0.0.0/8, ::1, ``localhost``) only people logged in to this machine can
reach the page, so it may run without accounts, as the demo does. On any other address it needs
a login (accounts or a token), unless the user says ``--insecure``, which is logged as a warning
at every start.
"""

from __future__ import annotations

import logging

from plantimager.commons.security import is_loopback
from plantimager.commons.security.exposure import guard_exposure

__all__ = ["check_exposure", "is_loopback"]

logger = logging.getLogger(__name__)


def check_exposure(host: str, *, authenticated: bool, insecure: bool = False) -> None:
    """Refuse to serve an open page beyond this machine.

    Parameters
    ----------
    host : str
        The address the page is to listen on.
    authenticated : bool
        Whether the page has accounts (a login).
    insecure : bool
        Serve without a login anyway (``--insecure``): logged as a warning.

    Raises
    ------
    ValidationError
        If ``host`` is not a loopback address, the page has no accounts and ``insecure`` is false;
        the message says how to add an account.
    """
    where = host or "0.0.0.0"
    guard_exposure(
        host,
        protected=authenticated,
        insecure=insecure,
        refusal=f"refusing to serve the page on {where} without a login: anyone who can reach it could "
        "capture, download and shut the cameras down. Add an account with "
        "`plantimager web --set-password NAME --role operator`, or log in by a printed link with "
        "--token, or serve on 127.0.0.1, or give --insecure if this network is trusted",
        warning=f"serving the page on {where} WITHOUT a login (--insecure): anyone who can reach it can "
        "drive the rig",
        log=logger,
    )
