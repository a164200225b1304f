"""``plantimager keys``: init, show, trust, list, revoke, through the command line."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import zmq.auth
from click.testing import CliRunner

from helpers.process import LAUNCH
from plantimager.cli.main import main


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_init_creates_a_private_key_pair_and_never_prints_the_secret(tmp_path):
    folder = tmp_path / "conf" / "keys"
    result = run("keys", "--keys", str(folder), "init")
    assert result.exit_code == 0, result.output
    public, secret = zmq.auth.load_certificate(folder / "host.key_secret")
    assert stat.S_IMODE(os.stat(folder / "host.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert f"public key: {public.decode()}" in result.output and secret.decode() not in result.output
    again = run("keys", "--keys", str(folder), "init")
    assert again.exit_code == 1 and "a key pair 'host' exists already" in again.output
    assert zmq.auth.load_certificate(folder / "host.key_secret") == (public, secret)  # untouched
    shown = run("keys", "--keys", str(folder), "show", "--bare")
    assert shown.output == public.decode() + "\n"


def test_the_folder_comes_from_the_environment_or_the_config_dir(tmp_path):
    env = {"PLANTIMAGER_KEYS": str(tmp_path / "env-keys"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert run("keys", "init", env=env).exit_code == 0
    assert (tmp_path / "env-keys" / "host.key_secret").exists()
    env = {"PLANTIMAGER_KEYS": "", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert run("keys", "init", env=env).exit_code == 0
    assert (tmp_path / "xdg" / "plantimager" / "keys" / "host.key_secret").exists()


def test_trust_list_and_revoke(tmp_path):
    controller, pi = str(tmp_path / "controller"), str(tmp_path / "pi")
    run("keys", "--keys", controller, "init")
    run("keys", "--keys", pi, "init")
    pi_key = tmp_path / "pi-07.key"
    pi_key.write_bytes((tmp_path / "pi" / "host.key").read_bytes())
    alice = zmq.curve_keypair()[0].decode()

    trusted = run("keys", "--keys", controller, "trust", str(pi_key), "--role", "device")
    assert (
        trusted.exit_code == 0
        and trusted.output.startswith("trusted pi-07 (")
        and "as device" in trusted.output
    )
    # Z85 text goes after "--", as documented: one key in 85 starts with "-".
    trust = ("keys", "--keys", controller, "trust")
    assert run(*trust, "--role", "viewer", "--name", "alice", "--", alice).exit_code == 0
    nameless = run(*trust, "--role", "viewer", "--", zmq.curve_keypair()[0].decode())
    assert nameless.exit_code == 1 and "give the key a name with --name" in nameless.output
    bad_role = run(*trust, "--role", "admin", "--", alice)
    assert (
        bad_role.exit_code == 2 and "'admin' is not one of 'viewer', 'device', 'operator'" in bad_role.output
    )
    listing = run("keys", "--keys", controller, "list").output.splitlines()
    pi_public = zmq.auth.load_certificate(pi_key)[0].decode()
    assert listing[0] == f"alice\tviewer\t{alice}"
    assert listing[1] == f"pi-07\tdevice\t{pi_public}"
    assert listing[2].startswith("self\toperator\t")

    assert run("keys", "--keys", controller, "revoke", "pi-07").output.startswith("revoked pi-07 (")
    assert run("keys", "--keys", controller, "list").output.splitlines()[-1] == f"pi-07\trevoked\t{pi_public}"
    unknown = run("keys", "--keys", controller, "revoke", "nobody")
    assert (
        unknown.exit_code == 1 and "no trusted key matches 'nobody'; trusted: alice, self" in unknown.output
    )


def test_commands_without_a_key_pair_say_how_to_make_one(tmp_path):
    result = run("keys", "--keys", str(tmp_path / "empty"), "show")
    assert result.exit_code == 1 and "create this host's keys with `plantimager keys init`" in result.output


@pytest.mark.timeout(60)
def test_the_installed_command_makes_keys_with_mode_0600(tmp_path):
    done = subprocess.run(
        [*LAUNCH, "keys", "--keys", str(tmp_path / "k"), "init"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "k" / "host.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "k" / "host.key").st_mode) == 0o644


def test_a_key_starting_with_a_dash_is_refused_saying_to_put_it_after_the_double_dash(tmp_path):
    controller = str(tmp_path / "controller")
    run("keys", "--keys", controller, "init")
    dashed = "-" + zmq.curve_keypair()[0].decode()[1:]  # Z85 text starting with "-": a valid key
    misread = run("keys", "--keys", controller, "trust", dashed, "--role", "viewer", "--name", "dash")
    assert misread.exit_code == 2, misread.output
    assert 'a key starting with "-" goes after "--"' in misread.output
    after = run("keys", "--keys", controller, "trust", "--role", "viewer", "--name", "dash", "--", dashed)
    assert after.exit_code == 0, after.output
    assert f"dash\tviewer\t{dashed}" in run("keys", "--keys", controller, "list").output.splitlines()
