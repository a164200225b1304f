"""The page with accounts, in a real browser against a real rig: login, a viewer, an operator, CSRF.

The tests share one rig (two nodes) with a viewer and an operator account and run in file order.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from plantimager.web.accounts import AccountStore
from plantimager.web.gate import WebAuth

from .conftest import log_in_page

pytestmark = pytest.mark.timeout(90)

PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1"}
CAMERAS = ("web1/cam0", "web2/cam0")
ACTIONS = ("#capture-all", "#download-all", "#scan-start", "#open-settings", "#shutdown-all")


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    store = AccountStore(tmp_path_factory.mktemp("accounts") / "web-accounts.json")
    store.set_password("vera", PASSWORDS["vera"], "viewer")
    store.set_password("otto", PASSWORDS["otto"], "operator")
    return WebAuth(store)


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging, auth):
    with make_rigging(tmp_path_factory.mktemp("browser-login"), ["web1", "web2"], auth=auth) as bundle:
        yield bundle


def log_in(page, url, name, password=None):
    log_in_page(page, url, name, password or PASSWORDS[name])


def wait_frames(page, key, count):
    page.wait_for_function(
        "([key, n]) => Number(document.querySelector(`.card[data-key='${key}']`)?.dataset.frames) >= n",
        arg=[key, count],
    )


POST = """async ([path, token]) => {
  const headers = {"Content-Type": "application/json"};
  if (token !== null) headers["X-CSRF-Token"] = token;
  const answer = await fetch(path, {method: "POST", headers, body: "{}"});
  return {status: answer.status, body: await answer.json()};
}"""


def test_the_page_asks_for_a_login(rig, new_page):
    page = new_page()
    log_in(page, rig.url, "otto", "not-the-password")
    expect(page.locator("#login-error")).to_have_text("Wrong account name or password.")
    expect(page.locator("#login-account")).to_have_value("otto")
    expect(page.locator("#login-password")).to_have_value("")
    assert page.locator("#grid").count() == 0  # nothing of the rig is shown
    page.fill("#login-password", PASSWORDS["otto"])
    page.click("#login-submit")
    expect(page.locator("#camera-count")).to_have_text("2")
    expect(page.locator("#account-name")).to_contain_text("otto")
    expect(page.locator("#account-role")).to_have_text("operator")


def test_a_viewer_sees_previews_but_no_enabled_action(rig, new_page):
    page = new_page()
    log_in(page, rig.url, "vera")
    expect(page.locator("#account-role")).to_have_text("viewer")
    for key in CAMERAS:
        wait_frames(page, key, 2)
    for button in ACTIONS:
        expect(page.locator(button)).to_be_disabled()
        expect(page.locator(button)).to_have_attribute("title", "needs the operator role")
    for key in CAMERAS:
        expect(page.locator(f'.card[data-key="{key}"] .capture-one')).to_be_disabled()
        expect(page.locator(f'.card[data-key="{key}"] .settings-one')).to_be_disabled()
    expect(page.locator("#conn-state")).to_have_text("live")
    # The full-screen preview works for a viewer too.
    page.locator(f'.card[data-key="{CAMERAS[0]}"] .preview').click()
    page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth === 640")
    page.click("#viewer-close")
    # The server refuses a viewer's action even with the page's own token.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = page.evaluate(POST, ["/api/capture", token])
    assert answer["status"] == 403
    assert answer["body"]["error"] == "refused: capture needs the operator role; account 'vera' is a viewer"
    assert page.evaluate(POST, ["/api/shutdown", token])["status"] == 403
    expect(page.locator("#capture-result")).to_have_text("No capture yet.")
    assert len(rig.rig.cameras()) == 2  # no node was shut down


def test_an_operator_can_capture(rig, new_page):
    page = new_page()
    log_in(page, rig.url, "otto")
    for button in ACTIONS:
        expect(page.locator(button)).to_be_enabled()
    page.click("#capture-all")
    expect(page.locator("#capture-result")).to_have_text(
        re.compile(r"^Capture 1: 2 of 2 cameras answered, skew \d+\.\d\d ms$")
    )
    expect(page.locator("#capture-all")).to_be_enabled()
    page.click("#download-all")
    expect(page.locator("#download-text")).to_contain_text("Downloaded 2 images")
    expect(page.locator("#download-all")).to_be_enabled()


def test_a_post_without_a_valid_csrf_token_is_403(rig, new_page):
    page = new_page()
    log_in(page, rig.url, "otto")
    expect(page.locator("#capture-result")).to_contain_text("Capture 1:")
    missing = page.evaluate(POST, ["/api/capture", None])
    assert missing["status"] == 403
    assert missing["body"]["error"].startswith("refused: missing CSRF token")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    foreign = page.evaluate(POST, ["/api/capture", token[::-1]])
    assert foreign["status"] == 403
    assert "does not belong to this session" in foreign["body"]["error"]
    assert page.evaluate("() => fetch('/api/gallery').then((r) => r.json())")["capture"]["capture_no"] == 1
    assert page.evaluate(POST, ["/api/capture", token])["body"]["capture_no"] == 2  # the right one works


def test_an_expired_session_goes_back_to_the_login(rig, new_page, auth):
    page = new_page()
    log_in(page, rig.url, "otto")
    expect(page.locator("#camera-count")).to_have_text("2")
    real = auth.clock
    auth.clock = lambda: real() + auth.lifetime + 60
    try:
        # The page's live streams are refused from now on too, and the page may leave for the
        # login by itself before the click lands: either way it ends at the login, capturing nothing.
        with contextlib.suppress(PlaywrightError):
            page.locator("#capture-all").click(timeout=3000)
        expect(page).to_have_url(re.compile(r"/login\?next=%2F&expired=1$"))
        expect(page.locator("#login-notice")).to_have_text("Your session expired: log in again.")
    finally:
        auth.clock = real
    page.fill("#login-account", "otto")
    page.fill("#login-password", PASSWORDS["otto"])
    page.click("#login-submit")
    expect(page.locator("#camera-count")).to_have_text("2")
    expect(page.locator("#capture-result")).to_contain_text("Capture 2:")  # the expired click did not capture


@pytest.mark.parametrize("javascript", [True, False], ids=["script", "no-script"])
def test_logging_out(rig, new_page, javascript):
    # Without the page's script (or before it runs) the form itself carries the CSRF token.
    page = new_page(javascript=javascript)
    log_in(page, rig.url, "vera")
    expect(page.locator("#account-name")).to_contain_text("vera")
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(rig.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
