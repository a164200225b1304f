"""Key folders: this host's pair, the trust with roles, revocation, file modes and bad input."""

from __future__ import annotations

import os
import stat

import pytest
import zmq.auth

from plantimager.commons.errors import ValidationError
from plantimager.commons.security import KeyRing, Role, keys_dir
from plantimager.commons.security.exposure import bind_host, check_exposure


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_a_pyzmq_key_pair_with_a_private_secret_file_and_trusts_itself(tmp_path):
    ring = KeyRing.init(tmp_path / "a" / "keys")
    public, secret = tmp_path / "a" / "keys" / "host.key", tmp_path / "a" / "keys" / "host.key_secret"
    assert mode(secret) == 0o600 and mode(tmp_path / "a" / "keys") == 0o700 and mode(tmp_path / "a") == 0o700
    assert zmq.auth.load_certificate(secret) == (ring.public_key, ring.secret_key)
    assert zmq.auth.load_certificate(public) == (ring.public_key, None)
    assert zmq.curve_public(ring.secret_key) == ring.public_key
    assert [(e.name, e.role) for e in ring.entries()] == [("self", Role.OPERATOR)]
    with pytest.raises(ValidationError, match="exists already"):
        KeyRing.init(tmp_path / "a" / "keys")


def test_trust_revoke_and_roles_are_kept_in_files_a_new_keyring_reads(tmp_path):
    ring = KeyRing.init(tmp_path / "host")
    other = KeyRing.init(tmp_path / "pi")
    copied = tmp_path / "pi-07.key"
    copied.write_bytes((other.folder / "host.key").read_bytes())
    entry = ring.trust(copied, "device")
    assert (entry.name, entry.role, entry.public_key) == ("pi-07", Role.DEVICE, other.public_key)
    assert KeyRing(ring.folder).role_of(other.public_key) is Role.DEVICE
    assert ring.trust(copied, Role.OPERATOR).role is Role.OPERATOR  # trusting again changes the role
    assert [e.name for e in ring.entries()] == ["pi-07", "self"]
    assert ring.server_key("pi-07") == other.public_key
    revoked = ring.revoke("pi-07")
    assert revoked.revoked and revoked.public_key == other.public_key
    fresh = KeyRing(ring.folder)
    assert fresh.role_of(other.public_key) is None
    assert fresh.check(other.public_key) == (None, f"revoked key pi-07 (key id {other.key_id})")
    assert [(e.name, e.revoked) for e in fresh.entries()] == [("self", False), ("pi-07", True)]
    assert ring.trust(other.public_key.decode(), "viewer", "pi-07").role is Role.VIEWER  # trusted again
    assert not [e for e in ring.entries() if e.revoked]


def test_a_stranger_is_unknown(tmp_path):
    ring = KeyRing.init(tmp_path / "host")
    public, _secret = zmq.curve_keypair()
    entry, reason = ring.check(public)
    assert entry is None and reason == f"unknown key (key id {public[:8].decode()})"


@pytest.mark.parametrize(
    ("ref", "name", "message"),
    [
        ("not-a-key", "x", "neither a key file, nor a trusted key's name, nor 40 characters"),
        ("A" * 39, "x", "neither a key file"),
        ("~" * 40, "x", "neither a key file"),
        (None, "../etc", "a key name is 1 to 64"),
        (None, "", "give the key a name"),
        (None, "-x", "a key name is 1 to 64"),
        (None, "self", "taken by another key"),
    ],
)
def test_bad_keys_and_names_are_refused_naming_what_is_wrong(tmp_path, ref, name, message):
    ring = KeyRing.init(tmp_path / "host")
    ref = ref if ref is not None else zmq.curve_keypair()[0].decode()
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        ring.trust(ref, "viewer", name or None)
    assert [e.name for e in ring.entries()] == ["self"]  # nothing was written


def test_unknown_role_and_unknown_revocation_are_refused(tmp_path):
    ring = KeyRing.init(tmp_path / "host")
    with pytest.raises(
        ValidationError, match="unknown role 'admin': expected one of viewer, device, operator"
    ):
        ring.trust(ring.public_key.decode(), "admin")
    with pytest.raises(ValidationError, match="no trusted key matches 'nobody'; trusted: self"):
        ring.revoke("nobody")


def test_a_secret_key_readable_by_others_is_refused(tmp_path):
    ring = KeyRing.init(tmp_path / "host")
    os.chmod(ring.folder / "host.key_secret", 0o644)
    with pytest.raises(ValidationError, match=r"readable by others.*chmod 600"):
        KeyRing(ring.folder)
    with pytest.raises(ValidationError, match="plantimager keys init"):
        KeyRing(tmp_path / "nothing")


def test_a_broken_secret_key_is_refused_without_repeating_it(tmp_path):
    ring = KeyRing.init(tmp_path / "host")
    secret_file = ring.folder / "host.key_secret"
    broken = ring.secret_key.decode()[:-1] + "~"  # '~' is not in the Z85 alphabet
    secret_file.write_text(secret_file.read_text().replace(ring.secret_key.decode(), broken))
    with pytest.raises(ValidationError, match="a secret key is 40 characters of Z85 text") as caught:
        KeyRing(ring.folder)
    assert ring.secret_key.decode()[:20] not in str(caught.value)


def test_a_broken_trusted_file_is_skipped_and_the_rest_still_counts(tmp_path, caplog):
    ring = KeyRing.init(tmp_path / "host")
    (ring.folder / "trusted" / "operator" / "broken.key").write_text('curve\n    public-key = "short"\n')
    assert KeyRing(ring.folder).role_of(ring.public_key) is Role.OPERATOR
    assert "ignoring the key file" in caplog.text


def test_the_key_folder_comes_from_the_option_then_the_environment_then_the_config_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PLANTIMAGER_KEYS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert keys_dir() == tmp_path / "config" / "plantimager" / "keys"
    monkeypatch.setenv("PLANTIMAGER_KEYS", str(tmp_path / "env"))
    assert keys_dir() == tmp_path / "env"
    assert keys_dir(tmp_path / "opt") == tmp_path / "opt"


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("tcp://*:0", "*"),
        ("tcp://127.0.0.1:5555", "127.0.0.1"),
        ("tcp://[::1]:5555", "::1"),
        ("tcp://localhost", "localhost"),
        ("0.0.0.0", "0.0.0.0"),
        ("10.0.0.2:80", "10.0.0.2"),
    ],
)
def test_bind_host(address, host):
    assert bind_host(address) == host


def test_without_keys_only_loopback_is_allowed_unless_insecure(caplog):
    for address in ("tcp://127.0.0.1:0", "tcp://[::1]:0", "tcp://localhost:5555", "127.0.0.2"):
        check_exposure(address, secured=False)
    for address in ("tcp://*:0", "tcp://0.0.0.0:5555", "tcp://192.168.10.2:0", "tcp://[::]:0"):
        check_exposure(address, secured=True)  # with keys: anywhere
        with pytest.raises(ValidationError, match=r"refusing to start the registry on .* without keys"):
            check_exposure(address, secured=False, what="registry")
    check_exposure("tcp://*:0", secured=False, insecure=True, what="camera node")
    assert "the camera node listens on tcp://*:0 WITHOUT keys (--insecure)" in caplog.text
