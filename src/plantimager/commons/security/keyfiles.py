"""CURVE key files on disk, in pyzmq's certificate format (``zmq.auth.create_certificates``).

A key pair is two files: ``NAME.key`` holds the public key and may be copied anywhere;
``NAME.key_secret`` holds both keys and is created with mode 0600 in a folder of mode 0700 (it
never exists with wider permissions, not even for a moment). A public key alone is a ``.key`` file
or its 40 characters of Z85 text, as ``plantimager keys show`` prints it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import stat
import tempfile
from pathlib import Path

import zmq.auth
from zmq.utils import z85

from ..errors import ValidationError

__all__ = [
    "PRIVATE_DIR_MODE",
    "SECRET_FILE_MODE",
    "check_key",
    "check_name",
    "create_key_pair",
    "make_private_dir",
    "read_key_pair",
    "read_public_key",
    "write_public_key",
]

#: Mode of a secret key file.
SECRET_FILE_MODE = 0o600
#: Mode of the folders holding keys.
PRIVATE_DIR_MODE = 0o700

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def check_name(name: str) -> str:
    """Return ``name`` if it can name a key: 1 to 64 of ``A-Z a-z 0-9 _ . -``, not first ``.`` or ``-``.

    Raises
    ------
    ValidationError
        Naming what is wrong.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            "a key name is 1 to 64 of letters, digits, '_', '.', '-' not starting with '.' or '-', "
            f"got {name!r}"
        )
    return name


def check_key(text: str | bytes, what: str = "public key") -> bytes:
    """Return a CURVE key given as 40 characters of Z85 text, as bytes.

    Raises
    ------
    ValidationError
        If it is not 40 characters of the Z85 alphabet decoding to 32 bytes.
    """
    value = text.decode("ascii", "replace") if isinstance(text, bytes) else str(text)
    value = value.strip()
    secret = "secret" in what  # a secret, even a broken one, is never repeated in a message
    if not _Z85.fullmatch(value):
        if secret:
            shown = f"{len(value)} characters, not all of them Z85"
        else:
            shown = repr(value if len(value) <= 48 else value[:45] + "...")
        raise ValidationError(f"a {what} is 40 characters of Z85 text, got {shown}")
    raw = z85.decode(value.encode("ascii"))
    if len(raw) != 32:  # pragma: no cover - 40 Z85 characters always decode to 32 bytes
        raise ValidationError(f"the {what} does not decode to 32 bytes")
    return value.encode("ascii")


def make_private_dir(folder: Path) -> Path:
    """Create ``folder`` (and its parents) if needed; every folder created here gets mode 0700."""
    missing = []
    path = folder
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            path.mkdir(mode=PRIVATE_DIR_MODE)
    if not folder.is_dir():
        raise ValidationError(f"{folder} is not a folder")
    return folder


def create_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """Create the key pair ``NAME.key`` / ``NAME.key_secret`` in ``folder`` with pyzmq.

    The files are made in a private temporary folder, the secret one set to mode 0600 there, and
    then moved into place, so the secret key is never readable by others.

    Returns
    -------
    (Path, Path)
        The public and the secret key files.

    Raises
    ------
    ValidationError
        If a key pair of that name exists already.
    """
    check_name(name)
    make_private_dir(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise ValidationError(f"a key pair {name!r} exists already in {folder}")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".new-") as scratch:  # mode 0700
        made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(scratch, name))
        os.chmod(made_secret, SECRET_FILE_MODE)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    return public, secret


def read_key_pair(secret_file: Path) -> tuple[bytes, bytes]:
    """Return ``(public, secret)`` Z85 keys of a ``.key_secret`` file.

    Raises
    ------
    ValidationError
        If the file is missing, readable by others than its owner, or holds no valid key pair.
    """
    try:
        mode = secret_file.stat().st_mode
    except FileNotFoundError:
        raise ValidationError(
            f"no secret key at {secret_file}; create this host's keys with `plantimager keys init`"
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise ValidationError(
            f"the secret key {secret_file} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {secret_file}`"
        )
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read the key pair {secret_file}: {exc}") from None
    if secret is None:
        raise ValidationError(f"{secret_file} holds no secret key")
    return check_key(public), check_key(secret, "secret key")


def read_public_key(source: str | os.PathLike[str]) -> bytes:
    """Return the public key of a ``.key`` (or ``.key_secret``) file.

    Raises
    ------
    ValidationError
        If the file cannot be read or holds no valid public key.
    """
    try:
        public, _secret = zmq.auth.load_certificate(source)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read a public key from {source}: {exc}") from None
    return check_key(public)


def write_public_key(path: Path, public_key: bytes, metadata: dict[str, str]) -> None:
    """Write ``public_key`` as a public certificate file (pyzmq's format), atomically.

    ``metadata`` goes in the certificate's metadata section, for people reading the file.
    """
    lines = [
        f"#   ****  Written on {datetime.datetime.now():%Y-%m-%d %H:%M:%S} by plantimager  ****",
        "#   ZeroMQ CURVE Public Certificate",
        "",
        "metadata",
        *(f"    {key} = {value}" for key, value in metadata.items()),
        "curve",
        f'    public-key = "{public_key.decode("ascii")}"',
        "",
    ]
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".key")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write("\n".join(lines))
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise
