"""Shutdown All asks first: dismissing does nothing; confirming stops every node."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging):
    with make_rigging(tmp_path_factory.mktemp("shutdown"), ["down1", "down2"]) as bundle:
        yield bundle


def test_shutdown_all_asks_first(rig, new_page):
    page = new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(rig.url + "/")
    expect(page.locator("#camera-count")).to_have_text("2")
    dialog = page.locator("#shutdown-dialog")

    page.click("#shutdown-all")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Shut down all camera nodes?")
    expect(page.locator("#shutdown-count")).to_have_text("2")
    page.click("#shutdown-cancel")
    expect(dialog).to_be_hidden()
    # Anything the dialog would have sent leaves before this request; nothing did.
    count = page.evaluate("fetch('/api/cameras').then(r => r.json()).then(b => b.count)")
    assert count == 2 and posts == []
    assert all(node.popen.poll() is None for node in rig.nodes.values())

    page.click("#shutdown-all")
    page.keyboard.press("Escape")  # also a way to say no
    expect(dialog).to_be_hidden()
    assert page.evaluate("fetch('/api/cameras').then(r => r.json()).then(b => b.count)") == 2
    assert posts == []

    page.click("#shutdown-all")
    page.click("#shutdown-confirm")
    expect(page.locator("#messages .message.info")).to_contain_text("Shutdown sent: 2 node(s) stopping.")
    for node in rig.nodes.values():
        assert node.popen.wait(15) == 0
    assert posts == [rig.url + "/api/shutdown"]
    expect(page.locator("#camera-count")).to_have_text("0")  # they unregistered on their way out
    expect(page.locator("#empty")).to_be_visible()
