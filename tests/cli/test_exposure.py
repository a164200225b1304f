"""Servers without keys stay on loopback: beyond it they refuse to start, before binding anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from helpers.process import LAUNCH, Child
from plantimager.cli.main import main
from plantimager.commons.security import default_bind

pytestmark = pytest.mark.timeout(60)


def run(*args: str, env: dict[str, str] | None = None):
    env = {"PLANTIMAGER_KEYS": "", **(env or {})}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["camera", "--bind", "tcp://*:0", "--registry", ""], "camera node on tcp://*:0"),
        (["camera", "--bind", "tcp://0.0.0.0:0", "--registry", ""], "camera node on tcp://0.0.0.0:0"),
        (["registry", "--bind", "tcp://*:0"], "registry on tcp://*:0"),
        (["turntable", "--bind", "tcp://*:0", "--registry", ""], "turntable on tcp://*:0"),
    ],
)
def test_a_server_without_keys_refuses_every_interface(args, what, tmp_path):
    result = run(*args, "--spool", str(tmp_path / "spool")) if args[0] == "camera" else run(*args)
    assert result.exit_code == 1
    assert f"refusing to start the {what} without keys" in result.output
    assert "plantimager keys init" in result.output and "--insecure" in result.output


@pytest.mark.parametrize("server", ["camera", "turntable"])
def test_a_server_given_no_keys_and_no_address_listens_on_loopback(server, tmp_path):
    args = [server, "--registry", ""]
    if server == "camera":
        args += ["--spool", str(tmp_path / "spool"), "--state-dir", str(tmp_path / "state")]
    child = Child([*LAUNCH, *args], env={"PLANTIMAGER_KEYS": ""})
    try:
        host, port = child.wait_for(r"listening on (?:tcp://)?(\S+):(\d+)$").groups()
        assert host == "127.0.0.1" and int(port) > 0
    finally:
        child.kill()
    assert "refusing" not in "\n".join(child.seen)


def test_the_default_address_is_every_interface_only_with_keys_or_insecure():
    assert default_bind(5555, secured=False) == "tcp://127.0.0.1:5555"
    assert default_bind(0, secured=True) == default_bind(0, secured=False, insecure=True) == "tcp://*:0"


@pytest.mark.parametrize("port", ["65536", "99999"])
def test_a_registry_port_out_of_range_is_refused(port):
    result = run("registry", "--bind", f"tcp://127.0.0.1:{port}")
    assert result.exit_code == 2 and f"port {port} is out of range (0 to 65535)" in result.output


def test_the_web_page_refuses_every_interface_without_a_login(tmp_path):
    result = run("web", "--host", "0.0.0.0", "--port", "0", "--accounts", str(tmp_path / "none.json"))
    assert result.exit_code == 1
    assert "refusing to serve the page on 0.0.0.0 without a login" in result.output


def test_keys_that_cannot_be_read_are_a_clear_error(tmp_path):
    result = run("registry", "--bind", "tcp://127.0.0.1:0", "--keys", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "plantimager keys init" in result.output
    result = run("rig", "list", "--registry-key", "controller")
    assert result.exit_code == 2 and "--registry-key goes with keys" in result.output


@pytest.mark.parametrize("server", ["camera", "turntable"])
def test_a_malformed_registry_address_is_refused_before_anything_listens(server, tmp_path):
    args = [server, "--registry", "foo:bar"]
    if server == "camera":
        args += ["--spool", str(tmp_path / "spool"), "--state-dir", str(tmp_path / "state")]
    result = run(*args)
    assert result.exit_code == 1 and "a registry address is tcp://HOST:PORT" in result.output
    assert "listening" not in result.output and not (tmp_path / "spool").exists()
