"""The dashboard in a real browser, against a real rig: live count, previews, capture, download,
settings, a camera that dies, a phone-sized screen.

The tests of this module share one rig (three nodes, a fourth arrives) and run in file order.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(90)

TIMES = "\N{MULTIPLICATION SIGN}"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging):
    with make_rigging(tmp_path_factory.mktemp("browser"), ["node1", "node2", "node3"]) as bundle:
        yield bundle


def card(page, key):
    return page.locator(f'.card[data-key="{key}"]')


def wait_frames(page, key, count):
    """Wait until the card of ``key`` has shown at least ``count`` preview frames."""
    page.wait_for_function(
        "([key, n]) => Number(document.querySelector(`.card[data-key='${key}']`)?.dataset.frames) >= n",
        arg=[key, count],
    )


def test_errors_are_shown_as_messages_not_broken_pages(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    page.click("#download-all")  # nothing captured yet
    expect(page.locator("#messages .message.error")).to_contain_text("nothing was captured yet")
    expect(page.locator("#grid .card")).to_have_count(3)  # the page keeps working

    response = page.goto(rig.url + "/view/nosuch/cam9")
    assert response.status == 404
    expect(page.locator(".message.error")).to_contain_text("unknown camera 'nosuch/cam9'")
    expect(page.locator("a", has_text="Back to the cameras")).to_be_visible()


def test_the_page_shows_every_camera_and_moving_previews(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(page.locator("#camera-count")).to_have_text("3")
    expect(page.locator("#healthy-count")).to_have_text("3 live")
    expect(page.locator(".card .cam-name")).to_have_text(["node1/cam0", "node2/cam0", "node3/cam0"])
    expect(page.locator("#conn-state")).to_have_text("live")
    for key in ("node1/cam0", "node2/cam0", "node3/cam0"):
        wait_frames(page, key, 2)
        # Size of the last decoded frame; no frame failed to decode.
        assert card(page, key).get_attribute("data-frame-size") == "640x480"
        assert card(page, key).get_attribute("data-bad-frames") is None
    # The relay delivered distinct frames from every node, and the picture changes.
    stats = rig.web.previews.stats()
    assert all(stats[k]["frames_in"] >= 2 and stats[k]["frames_out"] >= 2 for k in stats), stats
    preview = card(page, "node1/cam0").locator(".preview-img")
    before = preview.screenshot()
    shown = int(card(page, "node1/cam0").get_attribute("data-frames"))
    wait_frames(page, "node1/cam0", shown + 2)
    assert preview.screenshot() != before


def test_a_new_camera_appears_without_reload(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(page.locator("#camera-count")).to_have_text("3")
    page.evaluate("window.notReloaded = true")
    rig.spawn("node4")  # returns once the node is registered
    registered = time.monotonic()
    page.wait_for_function(
        "() => document.querySelector('#camera-count').textContent === '4'", polling="raf", timeout=10_000
    )
    latency = time.monotonic() - registered
    expect(card(page, "node4/cam0")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    wait_frames(page, "node4/cam0", 1)
    # The app's periodic re-check is 30 s here: only the rig's arrival event can have done this.
    assert latency < 1, f"the new camera showed after {latency:.2f} s"
    print(f"\nnew camera on the page {latency * 1e3:.0f} ms after it registered")


def test_capture_all_then_download_all_lists_the_dataset_files(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(page.locator("#camera-count")).to_have_text("4")
    page.click("#capture-all")
    result = page.locator("#capture-result")
    expect(result).to_have_text(re.compile(r"^Capture 1: 4 of 4 cameras answered, skew \d+\.\d\d ms$"))
    expect(page.locator("#gallery-info")).to_contain_text("4 still on the cameras")

    page.click("#download-all")
    expect(page.locator("#download-text")).to_contain_text("Downloaded 4 images")
    folder = page.locator("#dataset-folder").inner_text()
    files = sorted(p.name for p in os.scandir(folder) if p.name.endswith(".jpeg"))
    assert files == [f"idnode{i}_d1_cam0.jpeg" for i in range(1, 5)]
    assert os.path.dirname(folder) == str(rig.captures)
    progress = page.locator("#download-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == "4"
    captions = page.locator("#gallery figcaption")
    expect(captions).to_have_text(files)
    thumbs = page.locator("#gallery img")
    for index in range(4):
        expect(thumbs.nth(index)).to_have_js_property("complete", True)
        assert thumbs.nth(index).evaluate("img => img.naturalWidth") > 0
    # A second Capture All gets the next number; the page follows.
    page.click("#capture-all")
    expect(result).to_contain_text("Capture 2: 4 of 4 cameras answered")


def test_one_camera_captures_and_settings_apply_from_the_page(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    node2 = card(page, "node2/cam0")
    node2.locator(".capture-one").click()
    expect(page.locator("#capture-result")).to_contain_text("1 of 1 cameras answered")

    node2.locator(".settings-one").click()
    dialog = page.locator("#settings-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#settings-target")).to_have_value("node2/cam0")
    dialog.locator("select[name=rotation]").select_option("90")
    dialog.locator("input[name=quality]").fill("70")
    dialog.locator("#settings-apply").click()
    expect(page.locator("#settings-result")).to_have_text("Applied to 1 camera.")
    expect(node2.locator(".settings")).to_have_text(f"320{TIMES}240 · jpeg q70 · 90°")
    expect(card(page, "node1/cam0").locator(".settings")).to_have_text(f"320{TIMES}240 · jpeg q90 · 0°")

    # Bad values are refused with the reason, in the dialog, and the page goes on working.
    dialog.locator("input[name=quality]").fill("")
    dialog.locator("input[name=resolution]").fill("huge")
    dialog.locator("#settings-apply").click()
    expect(page.locator("#settings-result")).to_contain_text("resolution must be")
    dialog.locator("input[name=resolution]").fill("")
    dialog.locator("input[data-control=Brightness]").fill("5")
    dialog.locator("#settings-apply").click()
    expect(page.locator("#settings-result")).to_contain_text(
        "control 'Brightness' must be a number in [-1.0, 1.0]"
    )
    expect(page.locator("#settings-result")).to_have_class(re.compile("error"))
    dialog.locator("button[value=close]").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#camera-count")).to_have_text("4")


def test_full_screen_preview_relays_one_stream_and_stops_it_on_close(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    wait_frames(page, "node1/cam0", 1)
    card(page, "node1/cam0").locator(".preview").click()
    viewer = page.locator("#viewer-dialog")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-title")).to_contain_text("node1/cam0")
    page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth === 640")
    assert rig.web.previews.wait_for(lambda s: s["node1/cam0"]["viewers"] == 2, 10)
    page.click("#viewer-close")
    expect(viewer).to_be_hidden()
    assert rig.web.previews.wait_for(lambda s: s["node1/cam0"]["viewers"] == 1, 10)


def test_phone_sized_screen(rig, new_page):
    page = new_page(390, 844)
    page.goto(rig.url + "/")
    expect(page.locator("#camera-count")).to_have_text("4")
    wait_frames(page, "node1/cam0", 1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = [page.locator(".card").nth(i).bounding_box() for i in range(4)]
    assert len({round(b["x"]) for b in boxes}) == 1  # one column
    assert all(b["width"] <= 390 for b in boxes)
    for button in ("#capture-all", "#download-all", "#open-settings", "#shutdown-all"):
        expect(page.locator(button)).to_be_in_viewport()
    page.click("#open-settings")
    dialog_box = page.locator("#settings-dialog").bounding_box()
    assert dialog_box["x"] >= 0 and dialog_box["x"] + dialog_box["width"] <= 390


def test_a_camera_killed_mid_session_is_shown_as_gone(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(page.locator("#healthy-count")).to_have_text("4 live")
    victim = rig.nodes["node3"]
    os.kill(victim.pid, signal.SIGKILL)
    victim.popen.wait(10)
    node3 = card(page, "node3/cam0")
    expect(node3).to_have_class(re.compile(r"\bgone\b"))
    expect(node3.locator(".state-badge")).to_have_text("gone: not answering")
    expect(page.locator("#unhealthy-count")).to_have_text("1 not answering")
    expect(page.locator("#healthy-count")).to_have_text("3 live")
    # Capture All still works with the others, and says who did not answer.
    page.click("#capture-all")
    expect(page.locator("#capture-result")).to_contain_text("3 of 4 cameras answered")
    expect(page.locator("#messages .message.error")).to_contain_text("node3/cam0")


def test_a_camera_that_leaves_disappears_without_reload(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(card(page, "node4/cam0")).to_be_visible()
    leaving = rig.nodes["node4"]
    os.kill(leaving.pid, signal.SIGINT)  # it unregisters on its way out
    assert leaving.popen.wait(15) == 0
    gone = time.monotonic()
    page.wait_for_function(
        "() => !document.querySelector(`.card[data-key='node4/cam0']`)", polling="raf", timeout=10_000
    )
    latency = time.monotonic() - gone
    assert latency < 1, f"the camera left the page {latency:.2f} s after its node exited"
    print(f"\ncamera gone from the page {latency * 1e3:.0f} ms after its node exited")


def test_a_node_whose_clock_is_off_is_flagged_on_its_card(rig, new_page):
    page = new_page()
    page.goto(rig.url + "/")
    expect(card(page, "node1/cam0").locator(".clock-flag")).to_be_hidden()
    # A simulated node whose host clock is 2.5 ms ahead of NTP time, as chrony would report it.
    rig.spawn("skewed", extra=("--backend-option", "clock_offset_ms=2.5"))
    skewed = card(page, "skewed/cam0")
    expect(skewed).to_have_class(re.compile(r"\bclock-off\b"))
    expect(skewed.locator(".clock")).to_have_text("+2.500 ms")
    flag = skewed.locator(".clock-flag")
    expect(flag).to_be_visible()
    expect(flag).to_contain_text("clock 2.500 ms ahead of NTP time, more than the 1 ms skew budget")
    expect(card(page, "node1/cam0").locator(".clock-flag")).to_be_hidden()
    expect(card(page, "node1/cam0")).not_to_have_class(re.compile(r"\bclock-off\b"))
