"""``KeyRing``: this host's CURVE key pair and the public keys it trusts, each with a role.

A key folder (``plantimager keys init`` makes one) holds::

    host.key, host.key_secret     this host's key pair (the secret file has mode 0600)
    trusted/<role>/<name>.key     the public keys this host trusts, one folder per role
    revoked/<name>.key            keys that were trusted and are no longer

Servers look keys up in the folder as it is now: a key trusted or revoked while they run counts
from the next connection (and, for a connection already open, within a second).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError
from .curve import Curve
from .keyfiles import (
    check_key,
    check_name,
    create_key_pair,
    make_private_dir,
    read_key_pair,
    read_public_key,
    write_public_key,
)
from .roles import Role

__all__ = [
    "HOST_KEY",
    "KEYS_ENV",
    "KeyRing",
    "TrustEntry",
    "default_keys_dir",
    "key_id",
    "keys_dir",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the key folder (setting it also turns security on for every command).
KEYS_ENV = "PLANTIMAGER_KEYS"
#: Name of this host's key pair in the folder.
HOST_KEY = "host"
#: Name under which ``init`` trusts the host's own key (as an operator).
SELF_NAME = "self"
_TRUSTED = "trusted"
_REVOKED = "revoked"
#: Longest time a lookup may use the trust as it was read, seconds.
REFRESH_S = 1.0


def default_keys_dir() -> Path:
    """``$XDG_CONFIG_HOME/plantimager/keys`` (``~/.config/plantimager/keys`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "plantimager" / "keys"


def keys_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The key folder: ``option`` if given, else ``$PLANTIMAGER_KEYS``, else :func:`default_keys_dir`."""
    chosen = option or os.environ.get(KEYS_ENV) or default_keys_dir()
    return Path(os.path.expanduser(chosen))


def key_id(public_key: bytes) -> str:
    """A short, public identifier of a key for logs and listings: its first 8 Z85 characters."""
    return public_key[:8].decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """One key of the trust: its name, role (None once revoked) and public key."""

    name: str
    role: Role | None
    public_key: bytes
    path: Path

    @property
    def revoked(self) -> bool:
        """True for a revoked key."""
        return self.role is None

    def describe(self) -> str:
        """``name (key id abcdefgh)``, for logs."""
        return f"{self.name} (key id {key_id(self.public_key)})"


class KeyRing:
    """This host's key pair and the keys it trusts, read from a key folder. Thread-safe.

    Parameters
    ----------
    folder : path
        The key folder (see the module documentation).
    registry_key : str, optional
        The registry's public key, for a client of a registry: the name of a trusted key, a
        ``.key`` file or 40 characters of Z85 text. Default: this host's own key (a registry run
        on this host with this folder).

    Raises
    ------
    ValidationError
        If the folder has no key pair (``plantimager keys init`` makes one), its secret key is
        readable by others, or ``registry_key`` names no key.
    """

    def __init__(self, folder: str | os.PathLike[str], *, registry_key: str | bytes | None = None) -> None:
        self.folder = Path(os.path.expanduser(folder)).absolute()
        self.public_key, self.secret_key = read_key_pair(self.folder / f"{HOST_KEY}.key_secret")
        self._lock = threading.Lock()
        self._files: dict[tuple[str, int, int, int], bytes] = {}
        self._trusted: dict[bytes, TrustEntry] = {}
        self._revoked: dict[bytes, TrustEntry] = {}
        #: Longest time, in seconds, a lookup of an open connection's key may use the trust as last read.
        self.refresh_s = REFRESH_S
        self._read_at = -REFRESH_S
        self._reload()
        self.registry_key = self.server_key(registry_key) if registry_key else self.public_key

    def __repr__(self) -> str:
        return f"KeyRing({str(self.folder)!r}, key {self.key_id})"

    @property
    def key_id(self) -> str:
        """The short identifier of this host's public key."""
        return key_id(self.public_key)

    # -- making and changing a folder ---------------------------------------------------------------
    @classmethod
    def init(cls, folder: str | os.PathLike[str]) -> KeyRing:
        """Create this host's key pair in ``folder`` and trust it as an operator.

        Raises
        ------
        ValidationError
            If the folder holds a key pair already.
        """
        path = make_private_dir(Path(os.path.expanduser(folder)))
        create_key_pair(path, HOST_KEY)
        ring = cls(path)
        ring.trust(ring.public_key.decode("ascii"), Role.OPERATOR, SELF_NAME)
        return ring

    def trust(self, ref: str | os.PathLike[str], role: Role | str, name: str | None = None) -> TrustEntry:
        """Trust a public key with ``role``; trusting a trusted key again changes its role.

        Parameters
        ----------
        ref : str or path
            A ``.key`` file or 40 characters of Z85 text.
        role : Role or str
            What the key may do.
        name : str, optional
            How to call it; a file's name without ``.key`` by default (needed for Z85 text).

        Raises
        ------
        ValidationError
            If the key or name is not valid, or the name is taken by another key.
        """
        role = Role.parse(role)
        public_key, default_name = self._parse_ref(ref)
        with self._lock:
            self._reload()
            existing = self._trusted.get(public_key)
            if existing is not None:
                if name is not None and name != existing.name:
                    raise ValidationError(f"this key is trusted already as {existing.name!r}")
                name = existing.name
            if not (name or default_name):
                raise ValidationError(
                    "give the key a name with --name (a key file's name is used, unless it is host.key)"
                )
            name = check_name(name or default_name or "")
            for entry in self._trusted.values():
                if entry.name == name and entry.public_key != public_key:
                    raise ValidationError(
                        f"the name {name!r} is taken by another key; choose one with --name"
                    )
            folder = make_private_dir(self.folder / _TRUSTED / str(role))
            target = folder / f"{name}.key"
            write_public_key(target, public_key, {"name": name, "role": str(role)})
            if existing is not None and existing.path != target:
                existing.path.unlink(missing_ok=True)
            for old in [e for e in self._revoked.values() if e.public_key == public_key]:
                old.path.unlink(missing_ok=True)
            self._reload()
            return self._trusted[public_key]

    def revoke(self, ref: str | os.PathLike[str]) -> TrustEntry:
        """Stop trusting a key (by name, ``.key`` file or Z85 text); it is kept under ``revoked/``.

        Raises
        ------
        ValidationError
            If no trusted key matches ``ref``; the message lists the trusted names.
        """
        with self._lock:
            self._reload()
            entry = self._find(ref)
            folder = make_private_dir(self.folder / _REVOKED)
            target = folder / f"{entry.name}.key"
            if target.exists():
                target = folder / f"{entry.name}-{key_id(entry.public_key).replace('/', '_')}.key"
            shutil.move(entry.path, target)
            self._reload()
            return self._revoked[entry.public_key]

    def entries(self) -> list[TrustEntry]:
        """Every trusted key, then every revoked one, each sorted by name."""
        with self._lock:
            self._reload()
            trusted = sorted(self._trusted.values(), key=lambda e: e.name)
            revoked = sorted(self._revoked.values(), key=lambda e: e.name)
        return trusted + revoked

    def server_key(self, ref: str | bytes | os.PathLike[str]) -> bytes:
        """The public key a client should expect of a server: a trusted key's name, a file or Z85 text.

        Raises
        ------
        ValidationError
            If ``ref`` is none of these.
        """
        with self._lock:
            self._reload()
            for entry in self._trusted.values():
                if isinstance(ref, str) and entry.name == ref:
                    return entry.public_key
        return self._parse_ref(ref)[0]

    # -- lookups of servers ----------------------------------------------------------------------------
    def role_of(self, public_key: bytes | str) -> Role | None:
        """The role of a key now (None: not trusted); the trust is read again at most every second."""
        key = public_key.encode("ascii") if isinstance(public_key, str) else bytes(public_key)
        if time.monotonic() - self._read_at >= self.refresh_s:
            with self._lock:
                if time.monotonic() - self._read_at >= self.refresh_s:
                    self._reload()
        entry = self._trusted.get(key)  # the table is replaced whole, never changed in place
        return None if entry is None else entry.role

    def check(self, public_key: bytes) -> tuple[TrustEntry | None, str]:
        """Look a connecting key up in the trust as it is on disk now.

        Returns
        -------
        (TrustEntry or None, str)
            The entry of a trusted key and ``""``; else None and why it is refused (revoked or unknown).
        """
        with self._lock:
            self._reload()
            entry = self._trusted.get(public_key)
            if entry is not None:
                return entry, ""
            revoked = self._revoked.get(public_key)
        if revoked is not None:
            return None, f"revoked key {revoked.describe()}"
        return None, f"unknown key (key id {key_id(public_key)})"

    def describe(self, public_key: bytes | str) -> str:
        """The name and short id of a key, for logs (``unknown (key id abcdefgh)`` for a stranger)."""
        key = public_key.encode("ascii") if isinstance(public_key, str) else bytes(public_key)
        with self._lock:
            entry = self._trusted.get(key) or self._revoked.get(key)
        return entry.describe() if entry is not None else f"unknown (key id {key_id(key)})"

    # -- socket keys -----------------------------------------------------------------------------------
    def server_curve(self, zap_domain: str) -> Curve:
        """The keys of a server socket whose clients are checked under ``zap_domain``."""
        return Curve(self.public_key, self.secret_key, None, zap_domain)

    def client_curve(self, server_key: bytes | str) -> Curve:
        """The keys of a client socket of the server whose public key is ``server_key``."""
        return Curve(self.public_key, self.secret_key, check_key(server_key, "server key"))

    # -- reading the folder ------------------------------------------------------------------------------
    def _parse_ref(self, ref: str | bytes | os.PathLike[str]) -> tuple[bytes, str | None]:
        text = ref.decode("ascii", "replace") if isinstance(ref, bytes) else os.fspath(ref)
        path = Path(os.path.expanduser(text))
        if path.is_file():
            stem = path.name.removesuffix(".key_secret").removesuffix(".key")
            return read_public_key(path), stem if stem != HOST_KEY else None
        try:
            return check_key(text), None
        except ValidationError:
            raise ValidationError(
                f"{text!r} is neither a key file, nor a trusted key's name, nor 40 characters of Z85 text"
            ) from None

    def _find(self, ref: str | os.PathLike[str]) -> TrustEntry:
        for entry in self._trusted.values():
            if entry.name == os.fspath(ref):
                return entry
        try:
            key = self._parse_ref(ref)[0]
        except ValidationError:
            key = b""
        if key in self._trusted:
            return self._trusted[key]
        names = ", ".join(sorted(e.name for e in self._trusted.values())) or "none"
        raise ValidationError(f"no trusted key matches {os.fspath(ref)!r}; trusted: {names}")

    def _reload(self) -> None:
        """Read the trust from disk (caller holds the lock); unchanged files are not parsed again."""
        trusted: dict[bytes, TrustEntry] = {}
        revoked: dict[bytes, TrustEntry] = {}
        files: dict[tuple[str, int, int, int], bytes] = {}
        folders = [(self.folder / _TRUSTED / str(role), role) for role in Role]
        for folder, role in [*folders, (self.folder / _REVOKED, None)]:
            try:
                items = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for item in sorted(items, key=lambda i: i.name):
                if not item.name.endswith(".key") or item.name.startswith("."):
                    continue
                try:
                    info = item.stat()
                    stamp = (item.path, info.st_mtime_ns, info.st_size, info.st_ino)
                    key = self._files.get(stamp) or read_public_key(item.path)
                except (OSError, ValidationError) as exc:
                    logger.warning("ignoring the key file %s: %s", item.path, exc)
                    continue
                files[stamp] = key
                entry = TrustEntry(item.name.removesuffix(".key"), role, key, Path(item.path))
                table = revoked if role is None else trusted
                held = table.get(key)
                if held is None or (role is not None and held.role is not None and role > held.role):
                    table[key] = entry
        self._files, self._trusted, self._revoked = files, trusted, revoked
        self._read_at = time.monotonic()
