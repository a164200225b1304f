"""The page's login against a live server and a real camera node: sessions, CSRF tokens, roles.

One rig (one node) serves the module, with a viewer and an operator account. Each test logs in
with its own httpx client (its own cookie jar).
"""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest

from plantimager.web.accounts import AccountStore
from plantimager.web.gate import CSRF_HEADER, RECHECK, WebAuth
from plantimager.web.throttle import LoginThrottle

from .conftest import error_of as refused

pytestmark = pytest.mark.timeout(120)

PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1"}
CAMERA = "login1/cam0"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = AccountStore(tmp_path_factory.mktemp("accounts") / "web-accounts.json")
    store.set_password("vera", PASSWORDS["vera"], "viewer")
    store.set_password("otto", PASSWORDS["otto"], "operator")
    return store


@pytest.fixture(scope="module")
def auth(store):
    return WebAuth(store)


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging, auth):
    with make_rigging(tmp_path_factory.mktemp("login"), ["login1"], auth=auth) as bundle:
        yield bundle


@pytest.fixture
def clock(auth):
    """The server's clock, which the test may move forward; put back afterwards."""
    now = [auth.clock()]
    real = auth.clock
    auth.clock = lambda: now[0]
    yield now
    auth.clock = real


@pytest.fixture
def client(rig):
    with httpx.Client(base_url=rig.url, timeout=20) as http:
        yield http


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def log_in(http: httpx.Client, name: str, password: str | None = None) -> str:
    """Log in through the form, as a browser does; return the session's CSRF token (from the page)."""
    token = form_token(http.get("/login").text)
    answer = http.post(
        "/login", data={"account": name, "password": password or PASSWORDS[name], "csrf_token": token}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    dashboard = http.get("/", headers={"Accept": "text/html"})
    assert dashboard.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', dashboard.text)
    assert match and match.group(1) != token  # a new token once logged in
    return match.group(1)


#: The page's action buttons: the toolbar's and each camera card's (the card template's too).
ACTION_BUTTON = re.compile(
    r'<button type="button" (?:id="(capture-all|download-all|scan-start|scan-stop|open-settings'
    r'|shutdown-all)"|class="(capture-one|settings-one)")[^>]*>'
)


def action_buttons(page: str) -> list[str]:
    """Every action button's opening tag in ``page``, checking that each action is there."""
    tags = [match.group(0) for match in ACTION_BUTTON.finditer(page)]
    names = {match.group(1) or match.group(2) for match in ACTION_BUTTON.finditer(page)}
    assert len(names) == 8 and len(tags) >= 10, tags  # 6 in the toolbar, 2 per card (and the template)
    return tags


def capture_count(http: httpx.Client) -> int | None:
    capture = http.get("/api/gallery").json()["capture"]
    return capture["capture_no"] if capture else None


# -- without a session -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/cameras",
        "/api/status",
        "/api/events",
        "/api/previews.bin",
        f"/cameras/{CAMERA}/preview.mjpg",
        f"/cameras/{CAMERA}/snapshot.jpg",
        "/api/gallery",
    ],
)
def test_without_a_session_the_api_and_the_previews_are_401(client, path):
    assert "not logged in: log in first" in refused(client.get(path), 401)


def test_without_a_session_pages_lead_to_the_login_form(client):
    answer = client.get(f"/view/{CAMERA}", headers={"Accept": "text/html"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fview%2Flogin1%2Fcam0"
    page = client.get(answer.headers["location"])
    assert page.status_code == 200 and 'id="login-form"' in page.text
    assert 'name="next" value="/view/login1/cam0"' in page.text
    assert client.get("/static/app.js").status_code == 200  # what the login page needs stays open


def test_actions_without_a_session_are_401_and_nothing_runs(client, rig):
    assert "not logged in" in refused(client.post("/api/session", json={}), 401)
    assert "not logged in" in refused(client.post("/api/shutdown", json={"confirm": True}), 401)
    assert not rig.captures.exists()  # no session folder was made
    assert rig.rig.cameras()  # and the node is still there


# -- logging in ------------------------------------------------------------------------------------
def test_a_wrong_password_is_refused_and_logged_without_the_password(client, caplog):
    token = form_token(client.get("/login").text)
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        answer = client.post(
            "/login", data={"account": "otto", "password": "guess-guess", "csrf_token": token}
        )
        unknown = client.post(
            "/login", data={"account": "nobody", "password": "guess-guess", "csrf_token": token}
        )
    assert answer.status_code == 401 and "Wrong account name or password." in answer.text
    assert unknown.status_code == 401 and "Wrong account name or password." in unknown.text
    assert 'value="otto"' in answer.text  # the name is kept in the form, the password is not
    assert "guess-guess" not in answer.text
    assert refused(client.get("/api/cameras"), 401)
    lines = [r.getMessage() for r in caplog.records if "refused login" in r.getMessage()]
    assert len(lines) == 2
    assert re.match(r"refused login from 127\.0\.0\.1:\d+ \(account otto\): wrong account name", lines[0])
    assert "(account nobody)" in lines[1]
    assert not any("guess-guess" in r.getMessage() or token in r.getMessage() for r in caplog.records)


def test_a_login_form_without_its_token_is_refused(client, rig):
    client.get("/login")
    answer = client.post("/login", data={"account": "otto", "password": PASSWORDS["otto"]})
    assert answer.status_code == 403 and "This login form is out of date" in answer.text
    other = httpx.Client(base_url=rig.url, timeout=20)
    with other:
        foreign = form_token(other.get("/login").text)
    answer = client.post(
        "/login", data={"account": "otto", "password": PASSWORDS["otto"], "csrf_token": foreign}
    )
    assert answer.status_code == 403
    assert refused(client.get("/api/cameras"), 401)  # not logged in


def test_a_login_goes_back_to_the_page_asked_for_and_never_elsewhere(client):
    token = form_token(client.get("/login?next=/view/login1/cam0").text)
    fields = {"account": "vera", "password": PASSWORDS["vera"], "csrf_token": token}
    answer = client.post("/login", data={**fields, "next": "//evil.example/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert client.get("/login?next=/view/login1/cam0").headers["location"] == "/view/login1/cam0"


def test_an_operator_does_everything_with_the_token(client, rig):
    token = log_in(client, "otto")
    headers = {CSRF_HEADER: token}
    me = client.get("/api/account").json()
    assert me["account"] == "otto" and me["role"] == "operator" and me["csrf_token"] == token
    shot = client.post("/api/capture", json={}, headers=headers)
    assert shot.status_code == 200, shot.text
    assert shot.json()["answered"] == 1
    number = shot.json()["capture_no"]
    assert client.post("/api/download", json={}, headers=headers).status_code == 202
    with client.stream("GET", "/api/events") as events:  # the session's cookie opens the stream too
        done = next(
            json.loads(line[6:])
            for line in events.iter_lines()
            if line.startswith("data: ") and '"state":"done"' in line
        )
    assert done["result"]["written"] == 1
    changed = client.post("/api/settings", json={"rotation": 90}, headers=headers)
    assert changed.status_code == 200 and changed.json()["settings"][CAMERA]["rotation"] == 90
    assert capture_count(client) == number


def test_a_json_login_for_scripts(client):
    answer = client.post("/login", json={"account": "otto", "password": PASSWORDS["otto"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["account"] == "otto" and body["role"] == "operator"
    assert client.get("/api/account").json()["csrf_token"] == body["csrf_token"]
    bad = client.post("/login", json={"account": "otto", "password": "nope-nope"})
    assert refused(bad, 401) == "wrong account name or password"
    other_site = client.post(
        "/login",
        json={"account": "otto", "password": PASSWORDS["otto"]},
        headers={"Origin": "http://evil.example"},
    )
    assert "may not log in here" in refused(other_site, 403)


# -- CSRF tokens -------------------------------------------------------------------------------------
def test_an_action_without_the_csrf_token_is_403_and_nothing_runs(client, rig, caplog):
    token = log_in(client, "otto")
    before = capture_count(client)
    folders = sorted(rig.captures.iterdir())
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        missing = client.post("/api/capture", json={})
        foreign_token = "x" * len(token)
        foreign = client.post("/api/capture", json={}, headers={CSRF_HEADER: foreign_token})
        gone = client.post("/api/session", json={})
    assert "missing CSRF token" in refused(missing, 403)
    assert "x-csrf-token" in refused(missing, 403)
    assert "does not belong to this session" in refused(foreign, 403)
    assert "missing CSRF token" in refused(gone, 403)
    assert capture_count(client) == before  # no capture happened
    assert sorted(rig.captures.iterdir()) == folders  # and no new session folder
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused POST")]
    assert len(lines) == 3 and all("(account otto)" in line and "127.0.0.1:" in line for line in lines)
    assert not any(token in r.getMessage() or foreign_token in r.getMessage() for r in caplog.records)


def test_another_sessions_token_is_refused(client, rig):
    token = log_in(client, "otto")
    with httpx.Client(base_url=rig.url, timeout=20) as other:
        theirs = log_in(other, "otto")
        assert "does not belong" in refused(
            client.post("/api/capture", json={}, headers={CSRF_HEADER: theirs}), 403
        )
        assert client.get("/api/account").json()["csrf_token"] == token


# -- roles -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "action"),
    [
        ("/api/capture", {}, "capture"),
        (f"/api/cameras/{CAMERA}/capture", {}, "capture"),
        ("/api/download", {}, "download"),
        ("/api/scan", {"positions": 2}, "scan"),
        ("/api/scan/stop", {}, "stop the scan"),
        ("/api/settings", {"rotation": 180}, "change camera settings"),
        (f"/api/cameras/{CAMERA}/settings", {"rotation": 180}, "change camera settings"),
        ("/api/session", {}, "start a new session"),
        ("/api/shutdown", {"confirm": True}, "shut down the camera nodes"),
    ],
)
def test_a_viewer_is_refused_every_action_naming_it_and_the_role(client, rig, path, body, action):
    token = log_in(client, "vera")
    answer = client.post(path, json=body, headers={CSRF_HEADER: token})
    message = refused(answer, 403)
    assert message == f"refused: {action} needs the operator role; account 'vera' is a viewer"
    assert answer.json()["action"] == action and answer.json()["role"] == "operator"
    assert rig.rig.cameras()[0].rotation != 180  # nothing was applied, the node still serves
    assert client.get("/api/cameras").json()["healthy"] == 1


def test_a_viewer_reads_the_rig_and_watches_previews(client, rig):
    log_in(client, "vera")
    assert client.get("/api/cameras").json()["count"] == 1
    assert set(client.get("/api/status").json()["nodes"]) == {"login1"}
    frame = client.get(f"/cameras/{CAMERA}/snapshot.jpg")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    page = client.get("/", headers={"Accept": "text/html"}).text
    for tag in action_buttons(page):
        assert " disabled" in tag and 'data-locked title="needs the operator role"' in tag, tag
    assert 'data-role="viewer"' in page


def test_an_operators_actions_come_disabled_until_the_pages_script_wires_them(client):
    # A click before the script has wired a button would do nothing at all; the script enables
    # each button once its handler is in place (tests/web/test_browser_login.py sees it happen).
    log_in(client, "otto")
    page = client.get("/", headers={"Accept": "text/html"}).text
    for tag in action_buttons(page):
        assert " disabled" in tag and "data-locked" not in tag and "needs the operator role" not in tag, tag
    assert 'data-role="operator"' in page


# -- the end of a session ----------------------------------------------------------------------------
def test_an_expired_session_is_refused_cleanly(client, clock, caplog):
    token = log_in(client, "otto")
    clock[0] += 11 * 3600
    assert client.get("/api/account").status_code == 200
    clock[0] += 2 * 3600  # past the 12 hours
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        api = client.post("/api/capture", json={}, headers={CSRF_HEADER: token})
    assert refused(api, 401) == "not logged in: your session expired: log in again"
    assert any("(account otto): your session expired" in r.getMessage() for r in caplog.records)
    log_in(client, "otto")  # a new login works at once
    clock[0] += 13 * 3600
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F&expired=1"
    assert "Your session expired: log in again." in client.get(page.headers["location"]).text


def test_a_changed_password_or_a_removed_account_ends_its_sessions(client, rig, store):
    store.set_password("temp", "temporary-pass-1", "operator")
    log_in(client, "temp", "temporary-pass-1")
    store.set_password("temp", "temporary-pass-2")
    assert "password changed" in refused(client.get("/api/cameras"), 401)
    log_in(client, "temp", "temporary-pass-2")
    assert client.get("/api/account").json()["role"] == "operator"  # the role was kept
    store.remove("temp")
    assert "'temp' was removed" in refused(client.get("/api/cameras"), 401)


def test_logging_out_ends_the_session(client):
    token = log_in(client, "vera")
    assert "missing CSRF token" in refused(client.post("/logout"), 403)
    kept = client.cookies["plantimager_session"]  # a copy of the cookie, say in another browser
    answer = client.post("/logout", headers={CSRF_HEADER: token})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert refused(client.get("/api/cameras"), 401)
    with httpx.Client(base_url=client.base_url, timeout=20) as other:
        other.cookies.set("plantimager_session", kept)
        why = refused(other.get("/api/cameras"), 401)
        assert why == "not logged in: this session was logged out: log in again"
        assert other.get("/", headers={"Accept": "text/html"}).status_code == 303  # off to the login
    other_token = log_in(client, "vera")  # a new login is a new session
    assert other_token != token and client.get("/api/cameras").status_code == 200


def test_a_plain_form_may_carry_the_csrf_token_in_its_field(client, rig):
    """The page's logout form works before (or without) its script: the token is a form field."""
    token = log_in(client, "vera")
    foreign = client.post("/logout", data={"csrf_token": "not-this-sessions-token"})
    assert refused(foreign, 403) == "refused: the CSRF token does not belong to this session: reload the page"
    assert client.get("/api/account").json()["account"] == "vera"  # still logged in
    # A form action other than logging out is checked the same way, then by role.
    before = capture_count(client)
    assert "needs the operator role" in refused(client.post("/api/capture", data={"csrf_token": token}), 403)
    assert capture_count(client) == before
    answer = client.post("/logout", data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert refused(client.get("/api/cameras"), 401)


def test_repeated_wrong_passwords_lock_that_account_for_that_client_a_while(client, clock, caplog):
    for _ in range(5):
        assert client.post("/login", json={"account": "vera", "password": "wrong-guess"}).status_code == 401
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        locked = client.post("/login", json={"account": "vera", "password": PASSWORDS["vera"]})
    assert refused(locked, 429) == "too many failed logins for 'vera': try again in 30 s"
    assert any("(account vera): too many failed logins" in r.getMessage() for r in caplog.records)
    # Another account from the same client is not held up.
    assert client.post("/login", json={"account": "otto", "password": PASSWORDS["otto"]}).status_code == 200
    clock[0] += 31
    assert client.post("/login", json={"account": "vera", "password": PASSWORDS["vera"]}).status_code == 200
    assert client.post("/login", json={"account": "vera", "password": "wrong-guess"}).status_code == 401


def test_the_throttle_counts_per_client_and_account_within_its_window():
    throttle = LoginThrottle(limit=3, window=60, lockout=10, keys=2)
    mallory, alice = ("10.0.0.9", "otto"), ("10.0.0.2", "otto")
    for t in (0, 1, 2):
        assert throttle.locked_for(mallory, t) == 0
        throttle.failed(mallory, t)
    assert throttle.locked_for(mallory, 3) == 9
    assert throttle.locked_for(alice, 3) == 0  # the same account from elsewhere
    assert throttle.locked_for(mallory, 12.5) == 0  # the lockout is over
    throttle.failed(mallory, 13)
    assert throttle.locked_for(mallory, 14) == 9  # still 3 failures within the window
    assert throttle.locked_for(mallory, 62) == 0  # the first ones left the window
    throttle.failed(alice, 20)
    throttle.failed(("10.0.0.3", "x"), 21)  # a third key: the oldest is forgotten
    assert throttle.locked_for(mallory, 14) == 0
    throttle.succeeded(alice)
    assert throttle.locked_for(alice, 21) == 0


@pytest.mark.parametrize("path", ["/api/previews.bin", f"/cameras/{CAMERA}/preview.mjpg"])
def test_a_preview_stream_ends_soon_after_its_session(client, rig, clock, caplog, path):
    log_in(client, "vera")
    received, checked_at, expired_at = 0, None, None
    with caplog.at_level(logging.WARNING, logger="plantimager.web"), client.stream("GET", path) as stream:
        assert stream.status_code == 200
        for chunk in stream.iter_bytes():  # ends when the server closes the stream
            received += len(chunk)
            if checked_at is None and received > 20_000:
                clock[0] += RECHECK + 1  # a check of a valid session: the stream goes on
                checked_at = received
            elif checked_at is not None and expired_at is None and received > checked_at + 20_000:
                clock[0] += 13 * 3600  # the session expires while the stream runs
                expired_at = received
    assert expired_at is not None and received - expired_at < 1_000_000  # ended within a few frames
    assert any(
        r.getMessage().endswith("(account vera): your session expired: log in again (stream ended)")
        for r in caplog.records
    )
    assert rig.web.previews.wait_for(lambda stats: stats[CAMERA]["viewers"] == 0, 10)


@pytest.mark.parametrize(
    ("content", "ctype", "status", "words"),
    [
        (
            b"account=otto&password=" + b"x" * 5000,
            "application/x-www-form-urlencoded",
            413,
            "at most 4096 bytes",
        ),
        (b"account=otto", "text/plain", 415, "send the login as a form or as application/json"),
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"account": "otto"}', "application/json", 401, "give an account and a password"),
        (b'{"account": "otto", "password": 7}', "application/json", 401, "give an account and a password"),
    ],
)
def test_malformed_logins_get_a_clear_refusal(client, content, ctype, status, words):
    answer = client.post("/login", content=content, headers={"Content-Type": ctype})
    assert words in refused(answer, status)
    assert refused(client.get("/api/cameras"), 401)


def test_a_tampered_session_cookie_is_no_session(client, rig):
    log_in(client, "otto")
    cookie = client.cookies["plantimager_session"]
    payload, _, rest = cookie.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest
    client.cookies.clear()
    client.cookies.set("plantimager_session", forged)
    assert refused(client.get("/api/cameras"), 401) == "not logged in: log in first"


def test_a_typed_account_name_cannot_forge_log_lines(client, caplog):
    with caplog.at_level(logging.WARNING, logger="plantimager.web"):
        client.post("/login", json={"account": "x\nrefused login from 10.0.0.1", "password": "whatever-1"})
    (line,) = [r.getMessage() for r in caplog.records if "refused login" in r.getMessage()]
    assert "\n" not in line and "(account x?refused login from 10.0.0.1)" in line
