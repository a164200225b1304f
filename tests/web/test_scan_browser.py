"""The Scan control in a real browser: a scan of a simulated turntable with its progress, and bad input.

The page is served with accounts, as on a shared lab network: the operator's scan carries the
session's CSRF token, and a viewer follows the scan with the Scan button disabled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from plantimager.web.accounts import AccountStore
from plantimager.web.gate import WebAuth

from .conftest import ON_TABLE, Rigging, log_in_page, scan_rigging

pytestmark = pytest.mark.timeout(120)

PASSWORDS = {"otto": "operator-password-1", "vera": "viewer-password-1"}


@pytest.fixture(scope="module")
def scan_rig(tmp_path_factory) -> Iterator[Rigging]:
    """The scan rig (see :func:`~.conftest.scan_rigging`) with a login for an operator (otto) and a
    viewer (vera)."""
    home = tmp_path_factory.mktemp("scan-browser")
    store = AccountStore(home / "web-accounts.json")
    store.set_password("otto", PASSWORDS["otto"], "operator")
    store.set_password("vera", PASSWORDS["vera"], "viewer")
    with scan_rigging(home, WebAuth(store)) as bundle:
        yield bundle


def test_a_bad_plan_is_refused_with_its_reason_and_nothing_is_captured(scan_rig, new_page):
    page = new_page()
    log_in_page(page, scan_rig.url, "otto", PASSWORDS["otto"])
    page.fill("#scan-positions", "0")
    page.click("#scan-start")
    expect(page.locator("#messages .message.error")).to_contain_text(
        "positions must be between 1 and 3600, got 0"
    )
    expect(page.locator("#scan-start")).to_be_enabled()
    expect(page.locator("#scan-text")).to_have_text("No scan yet.")
    assert not scan_rig.captures.exists() or not list(scan_rig.captures.rglob("*.jpeg"))


def test_a_scan_shows_its_progress_and_ends_with_every_position_downloaded(scan_rig, new_page):
    page = new_page()
    log_in_page(page, scan_rig.url, "otto", PASSWORDS["otto"])
    page.fill("#scan-positions", "3")
    page.click("#scan-start")
    text = page.locator("#scan-text")
    expect(text).to_contain_text("Scanning:")  # the table takes seconds between positions
    expect(page.locator("#scan-start")).to_be_disabled()
    # What the server refuses during a scan waits for its end, saying why.
    for action in ("#capture-all", "#download-all", ".card .capture-one >> nth=0"):
        expect(page.locator(action)).to_be_disabled()
        expect(page.locator(action)).to_have_attribute("title", re.compile("^a scan is running"))
    expect(text).to_contain_text(
        "Scan 1 complete: 3 of 3 positions, 6 images downloaded into", timeout=60_000
    )
    expect(page.locator("#scan-progress")).to_have_attribute("value", "3")
    expect(page.locator("#scan-start")).to_be_enabled()
    for action in ("#capture-all", "#download-all", ".card .capture-one >> nth=0"):
        expect(page.locator(action)).to_be_enabled()
    dataset = scan_rig.rig.dataset.root
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert (
        sorted(image["position"]["angle"] for image in manifest["images"])
        == [0.0] * 2 + [120.0] * 2 + [240.0] * 2
    )
    # A viewer's page opened later shows the finished scan too, with the Scan button disabled.
    other = new_page()
    log_in_page(other, scan_rig.url, "vera", PASSWORDS["vera"])
    expect(other.locator("#scan-text")).to_contain_text("Scan 1 complete")
    expect(other.locator("#scan-start")).to_be_disabled()
    expect(other.locator("#scan-start")).to_have_attribute("title", "needs the operator role")
    expect(other.locator("#scan-positions")).to_be_disabled()
    expect(other.locator("#scan-stop")).to_be_hidden()


def test_a_scan_stopped_from_the_page_goes_on_with_scan(scan_rig, new_page):
    page = new_page()
    log_in_page(page, scan_rig.url, "otto", PASSWORDS["otto"])
    stop, text = page.locator("#scan-stop"), page.locator("#scan-text")
    expect(stop).to_be_hidden()
    page.fill("#scan-positions", "4")  # another plan than the scan before: scan 2
    page.click("#scan-start")
    expect(text).to_contain_text("Scanning:")  # each move takes 1.5 s
    page.click("#scan-stop")
    expect(text).to_contain_text(re.compile(r"Scan 2 stopped: [0-3] of 4 positions"), timeout=60_000)
    expect(text).to_contain_text("; Scan goes on from there")
    expect(stop).to_be_hidden()
    stopped = int(re.search(r"stopped: (\d) of", text.inner_text()).group(1))
    page.click("#scan-start")
    expect(text).to_contain_text(
        f"Scan 2 complete: 4 of 4 positions ({stopped} taken before)" if stopped else "Scan 2 complete",
        timeout=60_000,
    )


def test_a_camera_that_arrives_during_a_scan_shows_its_capture_disabled_until_the_end(scan_rig, new_page):
    # Last in the module: it adds a third camera to the rig.
    page = new_page()
    log_in_page(page, scan_rig.url, "otto", PASSWORDS["otto"])
    text = page.locator("#scan-text")
    page.fill("#scan-positions", "30")  # scan 3: longer than a node takes to start and be found
    page.click("#scan-start")
    expect(text).to_contain_text("Scanning:")
    # Each card's Capture as the card enters the page (before any later event could change it).
    page.evaluate(
        """() => {
          window.arrivals = [];
          new MutationObserver((records) => {
            for (const record of records) for (const card of record.addedNodes) {
              const button = card.querySelector && card.querySelector(".capture-one");
              if (button) window.arrivals.push([card.dataset.key, button.disabled, button.title]);
            }
          }).observe(document.querySelector("#grid"), { childList: true });
        }"""
    )
    scan_rig.spawn("node3", extra=ON_TABLE)
    capture = page.locator('.card[data-key^="node3/"] .capture-one')
    expect(capture).to_have_count(1)
    expect(text).to_contain_text("Scanning:")  # the card came while the scan ran
    [arrival] = page.evaluate("window.arrivals")
    key, disabled, title = arrival
    assert key.startswith("node3/") and disabled and title.startswith("a scan is running"), arrival
    expect(capture).to_be_disabled()
    page.click("#scan-stop")
    expect(text).to_contain_text(re.compile(r"Scan \d stopped: \d+ of 30 positions"), timeout=60_000)
    expect(capture).to_be_enabled()
    expect(capture).not_to_have_attribute("title", re.compile("scan"))
