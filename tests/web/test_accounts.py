"""Accounts of the page through the command line, the accounts file, and where the page may listen."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess

import httpx
import pytest
from starlette.applications import Starlette

from helpers.process import LAUNCH, Child
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import ValidationError
from plantimager.web import WebServer
from plantimager.web.accounts import AccountStore, hash_password, verify_password
from plantimager.web.exposure import check_exposure, is_loopback

pytestmark = pytest.mark.timeout(60)


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAUNCH, "web", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_set_password_writes_a_private_file_with_salted_hashes(tmp_path):
    path = tmp_path / "conf" / "accounts.json"
    done = run(
        "--accounts", str(path), "--set-password", "otto", "--role", "operator", stdin="same-password\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"account otto (operator) saved in {path}"
    done = run("--accounts", str(path), "--set-password", "vera", stdin="same-password\n")
    assert done.returncode == 0, done.stderr
    assert "account vera (viewer)" in done.stdout  # a new account is a viewer unless told
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "same-password" not in text
    accounts = json.loads(text)["accounts"]
    assert {n: a["role"] for n, a in accounts.items()} == {"otto": "operator", "vera": "viewer"}
    hashes = [accounts[n]["password"] for n in ("otto", "vera")]
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    salts = [h.split("$")[4] for h in hashes]
    assert salts[0] != salts[1] and hashes[0] != hashes[1]  # same password, different salts
    store = AccountStore(path)
    assert store.check("otto", "same-password").role == "operator"
    assert store.check("otto", "same-password\n") is None
    assert store.check("vera", "other-password") is None

    listing = run("--accounts", str(path), "--list-accounts")
    assert listing.stdout.splitlines() == ["otto\toperator", "vera\tviewer"]
    # A new password keeps the role; removing works and names what is left.
    assert run("--accounts", str(path), "--set-password", "otto", stdin="new-password\n").returncode == 0
    assert AccountStore(path).check("otto", "new-password").role == "operator"
    assert run("--accounts", str(path), "--remove-account", "vera").returncode == 0
    gone = run("--accounts", str(path), "--remove-account", "vera")
    assert gone.returncode == 1 and "no account 'vera'" in gone.stderr and "there are: otto" in gone.stderr


def test_the_accounts_file_is_found_by_environment_or_config_folder(tmp_path):
    named = tmp_path / "named.json"
    done = run("--set-password", "ana", stdin="password-123\n", env={"PLANTIMAGER_WEB_ACCOUNTS": str(named)})
    assert done.returncode == 0 and AccountStore(named).names() == ["ana"]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PLANTIMAGER_WEB_ACCOUNTS": ""}
    done = run("--set-password", "bo", stdin="password-123\n", env=env)
    assert done.returncode == 0, done.stderr
    assert AccountStore(tmp_path / "xdg" / "plantimager" / "web-accounts.json").names() == ["bo"]


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["--set-password", "otto"], "short\n", "a password needs at least 8 characters, got 5"),
        (["--set-password", "otto"], "", "no password on stdin"),
        (["--set-password", "bad name"], "long-enough\n", "an account name is 1 to 64 letters"),
        (["--set-password", "otto", "--role", "admin"], "long-enough\n", "'admin' is not one of"),
        (["--role", "operator"], "", "--role goes with --set-password"),
        (["--set-password", "a", "--list-accounts"], "long-enough\n", "give one of --set-password"),
    ],
)
def test_bad_account_commands_are_clear_errors_and_write_nothing(tmp_path, args, stdin, words):
    path = tmp_path / "accounts.json"
    done = run("--accounts", str(path), "--registry", "tcp://127.0.0.1:1", *args, stdin=stdin)
    assert done.returncode in (1, 2)
    assert words in done.stderr
    assert not path.exists()


def test_a_broken_accounts_file_is_named(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text('{"accounts": {"x": {"role": "root", "password": 1}}}')
    done = run("--accounts", str(path), "--list-accounts")
    assert done.returncode == 1
    assert f"{path}: account 'x' needs a role and a password hash" in done.stderr


def test_hashes_are_salted_and_checked_in_full():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct hors", first)
    assert not verify_password("correct horse", first[:-2] + "AA")
    assert not verify_password("correct horse", "plain text")


# -- where the page may listen --------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_exposure(host, authenticated=False)  # an open page on this machine only is fine


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.0.2.10", "rig-controller.lab"])
def test_other_addresses_need_accounts_or_insecure(host, caplog):
    assert not is_loopback(host)
    with pytest.raises(ValidationError, match=r"refusing to serve the page on .* without a login"):
        check_exposure(host, authenticated=False)
    check_exposure(host, authenticated=True)
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        check_exposure(host, authenticated=False, insecure=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"serving the page on {host or '0.0.0.0'} WITHOUT a login (--insecure): anyone who can reach it "
        "can drive the rig"
    ]


def test_the_server_refuses_an_open_page_on_all_addresses_before_binding():
    with pytest.raises(ValidationError, match="plantimager web --set-password NAME --role operator"):
        WebServer(Starlette(), "0.0.0.0", 0)


def test_plantimager_web_refuses_a_network_address_without_accounts(tmp_path):
    done = run(
        "--accounts", str(tmp_path / "none.json"), "--registry", "tcp://127.0.0.1:1", "--host", "0.0.0.0"
    )
    assert done.returncode == 1
    assert "Error: refusing to serve the page on 0.0.0.0 without a login" in done.stderr
    assert "--insecure" in done.stderr


@pytest.fixture
def registry(ctx):
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2)
    server.start()
    yield server
    server.stop()


def test_plantimager_web_with_accounts_asks_for_a_login(registry, tmp_path):
    path = tmp_path / "accounts.json"
    AccountStore(path).set_password("otto", "operator-pass", "operator")
    command = Child(
        [*LAUNCH, "web", "--registry", registry.url, "--port", "0", "--accounts", str(path)],
        env={"PLANTIMAGER_CAPTURES": str(tmp_path / "captures")},
    )
    try:
        url = command.wait_for(r"^serving the rig of \S+ at (http://127\.0\.0\.1:\d+)/$").group(1)
        command.wait_for(rf"^login required: 1 account\(s\) in {path}$")
        with httpx.Client(base_url=url, timeout=10) as http:
            page = http.get("/", headers={"Accept": "text/html"})
            assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
            assert http.get("/api/cameras").status_code == 401
            login = http.post("/login", json={"account": "otto", "password": "operator-pass"})
            assert login.status_code == 200 and login.json()["role"] == "operator"
            assert http.get("/api/cameras").json()["count"] == 0
        os.kill(command.pid, signal.SIGINT)
        assert command.popen.wait(15) == 0
    finally:
        command.kill()


def test_plantimager_web_with_a_token_logs_in_by_its_link(registry, tmp_path):
    command = Child(
        [*LAUNCH, "web", "--registry", registry.url, "--port", "0", "--token"],
        env={
            "PLANTIMAGER_CAPTURES": str(tmp_path / "captures"),
            "PLANTIMAGER_WEB_ACCOUNTS": str(tmp_path / "none.json"),  # no account
        },
    )
    try:
        url = command.wait_for(r"^serving the rig of \S+ at (http://127\.0\.0\.1:\d+)/$").group(1)
        link = command.wait_for(r"^log in with the token: (http://\S+/login\?token=(\S+))$")
        assert len(link.group(2)) >= 32
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/cameras").status_code == 401
            wrong = http.get("/login?token=" + link.group(2)[::-1])
            assert wrong.status_code == 401 and "This login token is not valid" in wrong.text
            assert 'id="token-note"' in wrong.text and 'id="login-password"' not in wrong.text
            assert http.get("/api/cameras").status_code == 401
            answer = http.get(link.group(1))
            assert answer.status_code == 303 and answer.headers["location"] == "/"
            me = http.get("/api/account").json()
            assert me["account"] == "(token)" and me["role"] == "operator"
            assert http.post("/api/session", json={}).status_code == 403  # the CSRF token is still needed
            started = http.post("/api/session", json={}, headers={"X-CSRF-Token": me["csrf_token"]})
            assert started.status_code == 200, started.text
        os.kill(command.pid, signal.SIGINT)
        assert command.popen.wait(15) == 0
        command.wait_for(r"^web page stopped$")
        after = command.seen[command.seen.index(link.string) + 1 :]
        assert after and not any(link.group(2) in line for line in after)  # printed once, never logged
    finally:
        command.kill()
