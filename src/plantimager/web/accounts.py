"""Accounts of the web page: a name, a role and a salted password hash, kept in one file.

The file is JSON, written with mode 0600 (its folder 0700)::

    {"version": 1, "accounts": {"alice": {"role": "operator", "password": "scrypt$16384$8$1$<salt>$<hash>"}}}

Passwords are hashed with :func:`hashlib.scrypt` (a memory-hard function of the standard library)
and a random 16-byte salt per account; the password itself is never stored or logged. The file is
read again when it changes on disk, so ``plantimager web --set-password`` or ``--remove-account``
take effect on a running page at the account's next request.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantimager.commons.errors import ValidationError

__all__ = [
    "ACCOUNTS_ENV",
    "MIN_PASSWORD",
    "OPERATOR",
    "ROLES",
    "VIEWER",
    "Account",
    "AccountStore",
    "default_accounts_path",
    "hash_password",
    "verify_password",
]

logger = logging.getLogger(__name__)

#: A viewer may list the cameras, read their status and settings and watch previews.
VIEWER = "viewer"
#: An operator may also capture, download, change settings, start a session and shut nodes down.
OPERATOR = "operator"
#: The roles, weakest first.
ROLES = (VIEWER, OPERATOR)
#: Environment variable naming the accounts file.
ACCOUNTS_ENV = "PLANTIMAGER_WEB_ACCOUNTS"
#: Fewest characters of a password.
MIN_PASSWORD = 8
_MAX_PASSWORD = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# scrypt cost: 2**14 x 8 x 128 bytes = 16 MiB of memory and some tens of ms per check.
_N, _R, _P = 2**14, 8, 1
_SALT = 16
_LENGTH = 32
_MAXMEM = 64 * 1024 * 1024


def default_accounts_path() -> Path:
    """Where the accounts are: ``$PLANTIMAGER_WEB_ACCOUNTS`` if set.

    Else ``$XDG_CONFIG_HOME/plantimager/web-accounts.json``, ``XDG_CONFIG_HOME`` defaulting to
    ``~/.config``.
    """
    named = os.environ.get(ACCOUNTS_ENV)
    if named:
        return Path(named)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "plantimager" / "web-accounts.json"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_LENGTH)


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$N$r$p$salt$hash`` (base64url).

    Raises
    ------
    ValidationError
        If the password is shorter than :data:`MIN_PASSWORD` characters or absurdly long.
    """
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"a password needs at least {MIN_PASSWORD} characters, got {len(password)}")
    if len(password) > _MAX_PASSWORD:
        raise ValidationError(f"a password has at most {_MAX_PASSWORD} characters")
    salt = secrets.token_bytes(_SALT)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_scrypt(password, salt, _N, _R, _P))}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` string); compares in constant time."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or len(password) > _MAX_PASSWORD:
            return False
        expected = _unb64(digest)
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# A hash to check against when the account does not exist, so both cases take the same time.
_DUMMY = f"scrypt${_N}${_R}${_P}${_b64(bytes(_SALT))}${_b64(bytes(_LENGTH))}"


@dataclass(frozen=True)
class Account:
    """One account of the web page.

    Attributes
    ----------
    name : str
        The account's name, as typed at login.
    role : str
        ``"viewer"`` or ``"operator"``.
    stamp : str
        A short fingerprint of the password hash: a session made before the password changed no
        longer matches it.
    """

    name: str
    role: str
    stamp: str

    @property
    def operates(self) -> bool:
        """Whether the account may change the rig (the operator role)."""
        return self.role == OPERATOR


def _stamp(stored: str) -> str:
    return hashlib.sha256(stored.encode("ascii", "replace")).hexdigest()[:16]


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValidationError(
            "an account name is 1 to 64 letters, digits or _.@- (starting with a letter or digit), "
            f"got {name!r}"
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


class AccountStore:
    """The accounts file: read, checked, written back atomically with mode 0600.

    Parameters
    ----------
    path : path
        The file (need not exist yet: then there is no account).

    Raises
    ------
    ValidationError
        From any method, if the file is not a valid accounts file (naming the file and what is
        wrong).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._accounts: dict[str, dict[str, str]] = {}

    # -- reading -----------------------------------------------------------------------------------
    def _signature(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _refresh(self) -> dict[str, dict[str, str]]:
        with self._lock:
            signature = self._signature()
            if signature != self._seen:
                self._accounts = self._read() if signature is not None else {}
                self._seen = signature
            return self._accounts

    def _read(self) -> dict[str, dict[str, str]]:
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            logger.warning("%s is readable by others (mode %o): chmod 600 it", self.path, mode)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{self.path} is not a readable accounts file: {exc}") from None
        accounts = data.get("accounts") if isinstance(data, dict) else None
        if not isinstance(accounts, dict):
            raise ValidationError(f'{self.path}: expected {{"version": 1, "accounts": {{...}}}}')
        for name, entry in accounts.items():
            if (
                not isinstance(entry, dict)
                or entry.get("role") not in ROLES
                or not isinstance(entry.get("password"), str)
            ):
                raise ValidationError(f"{self.path}: account {name!r} needs a role and a password hash")
        return accounts

    def names(self) -> list[str]:
        """The accounts' names, sorted."""
        return sorted(self._refresh())

    def __bool__(self) -> bool:
        return bool(self._refresh())

    def get(self, name: str) -> Account | None:
        """The account called ``name``, or None."""
        entry = self._refresh().get(name)
        if entry is None:
            return None
        return Account(name, entry["role"], _stamp(entry["password"]))

    def check(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else None (as slow for an unknown name)."""
        entry = self._refresh().get(name)
        stored = entry["password"] if entry is not None else _DUMMY
        matches = verify_password(password, stored)
        if entry is None or not matches:
            return None
        return Account(name, entry["role"], _stamp(stored))

    # -- writing -----------------------------------------------------------------------------------
    def set_password(self, name: str, password: str, role: str | None = None) -> Account:
        """Create the account or change its password (and role, if given; a new account is a viewer).

        Raises
        ------
        ValidationError
            If the name, role or password is not acceptable.
        """
        _check_name(name)
        accounts = dict(self._refresh())
        previous = accounts.get(name, {})
        role = _check_role(role) if role is not None else previous.get("role", VIEWER)
        accounts[name] = {"role": role, "password": hash_password(password)}
        self._write(accounts)
        return Account(name, role, _stamp(accounts[name]["password"]))

    def remove(self, name: str) -> None:
        """Delete an account.

        Raises
        ------
        ValidationError
            If there is no such account (listing those there are).
        """
        accounts = dict(self._refresh())
        if name not in accounts:
            listing = ", ".join(sorted(accounts)) or "none"
            raise ValidationError(f"no account {name!r} in {self.path} (there are: {listing})")
        del accounts[name]
        self._write(accounts)

    def _write(self, accounts: dict[str, Any]) -> None:
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps({"version": 1, "accounts": accounts}, indent=2, sort_keys=True) + "\n"
        fd, temp = tempfile.mkstemp(prefix=".accounts-", dir=folder)  # created with mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        with self._lock:
            self._seen = None  # read back at the next use
