"""The web page: time to a full dashboard, and the preview frame rate through the relay.

16 camera nodes (``--quick``: the same 16, fewer and shorter rounds), each a ``plantimager camera
--backend dummy`` process registered with a registry in this process, a :class:`plantimager.rig.Rig`
and its web app served by uvicorn on 127.0.0.1, and Debian's chromium driven by Playwright:

1. **Time to a full dashboard**: from navigation start to the moment all 16 camera cards are on the
   page, each showing a preview frame (median of several loads, each in a fresh browser context, so
   the relay starts cold each time). Floor, same run: a bare page of 16 ``<img>`` loading one
   snapshot straight from each node (what a page costs that does nothing but show one frame of
   each camera, with a direct connection to every node).
2. **Preview frame rate**, 16 cameras, frames per second per camera: the relay's MJPEG streams
   (``/cameras/{camera}/preview.mjpg``, 16 streams read at once by an HTTP client counting parts),
   the single multiplexed stream the dashboard reads (``/api/previews.bin``) and the frames the
   browser actually displayed, each against the nodes' own MJPEG streams read the same way (the
   floor: what a browser connected to every node directly would get). Rounds alternate between
   the variants so machine noise hits them alike.

``--screenshot PATH`` instead starts 8 nodes (each showing another view of the plant), presses
Capture All, waits for the result and every preview, and saves the dashboard at 1280x900.

Every process is stopped by its pid at the end, also on errors and Ctrl-C. Nothing leaves 127.0.0.1.

Run: ``python bench/web.py [--quick] [--screenshot docs/images/dashboard.png]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import zmq

from _common import machine_info, markdown_table
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.rig import Rig
from plantimager.web import WebServer, create_app
from plantimager.web.mjpegstream import MultipartParser

__all__ = ["main"]

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
LAUNCH = [sys.executable, "-c", "from plantimager.cli.main import main; main()"]
READY_TIMEOUT = 60.0


# -- the rig -----------------------------------------------------------------------------------------
class NodeProcess:
    """A ``plantimager camera`` process whose output lines can be waited on; stopped by its pid."""

    def __init__(self, name: str, registry: str, home: Path, first_view: int) -> None:
        self.name = name
        args = [
            *LAUNCH,
            "camera",
            "--backend",
            "dummy",
            "--registry",
            registry,
            "--spool",
            str(home / "spool"),
            "--state-dir",
            str(home / "state"),
            "--bind",
            "tcp://127.0.0.1:0",
            "--stream-port",
            "0",
            "--name",
            name,
            "--resolution",
            "640x480",
            "--backend-option",
            f"first_view={first_view}",
        ]
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_registered(self, deadline: float) -> None:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise RuntimeError(f"node {self.name} did not register:\n" + "\n".join(seen))
            seen.append(line)
            if re.match(rf"^registered as {re.escape(self.name)} ", line):
                return

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@contextlib.contextmanager
def served_rig(count: int, home: Path, *, views: bool) -> Iterator[tuple[Rig, WebServer]]:
    """``count`` camera nodes, a rig and its web app; everything stopped on exit."""
    context = zmq.Context()
    registry = DeviceRegistry(context, "127.0.0.1", 0)
    registry.start()
    nodes: list[NodeProcess] = []
    rig: Rig | None = None
    server: WebServer | None = None
    try:
        for number in range(1, count + 1):
            first_view = number - 1 if views else 0  # with views, each node shows another side
            nodes.append(NodeProcess(f"node{number}", registry.url, home / f"node{number}", first_view))
        deadline = time.monotonic() + READY_TIMEOUT
        for node in nodes:
            node.wait_registered(deadline)
        rig = Rig(registry.url, context=context).start()
        if not rig.wait_for_cameras(count, READY_TIMEOUT):
            raise RuntimeError(f"only {len(rig.cameras())} of {count} cameras came up")
        server = WebServer(create_app(rig, captures=home / "captures"), "127.0.0.1", 0).start()
        yield rig, server
    finally:
        if server is not None:
            server.stop()
        if rig is not None:
            rig.close()
        for node in nodes:
            node.stop()
        registry.stop()
        context.destroy(linger=0)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium (make browsers)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def page_server(body: str) -> Iterator[str]:
    """Serve the page ``body`` at every path of a loopback HTTP server; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# -- 1. time to a full dashboard ------------------------------------------------------------------------
ALL_SHOWN = "n => document.querySelectorAll('.card.has-frame').length >= n && performance.now()"
FLOOR_SHOWN = (
    "n => [...document.images].filter(i => i.complete && i.naturalWidth).length >= n && performance.now()"
)


def time_loads(browser: object, server: WebServer, rig: Rig, loads: int) -> tuple[list[float], list[float]]:
    """Milliseconds from navigation start to every preview shown: the dashboard, and the floor page."""
    snapshots = [
        cam.stream_url.replace("/stream/", "/snapshot/").replace(".mjpg", ".jpg") for cam in rig.cameras()
    ]
    # Served from a loopback address, as ours (the browser refuses loopback images to other pages).
    floor_html = (
        "<!doctype html><script>const n = location.pathname.slice(1);"
        + "".join(f"document.write('<img width=160 src=\"{url}?' + n + '\">');" for url in snapshots)
        + "</script>"
    )
    count = len(snapshots)
    ours, floor = [], []
    with page_server(floor_html) as floor_url:
        _time_loads(browser, server, count, loads, floor_url, ours, floor)
    return ours, floor


def _time_loads(
    browser: object,
    server: WebServer,
    count: int,
    loads: int,
    floor_url: str,
    ours: list[float],
    floor: list[float],
) -> None:
    for number in range(loads + 1):  # the first round warms up both and is dropped
        for variant in ("ours", "floor") if number % 2 else ("floor", "ours"):
            context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
            page = context.new_page()
            if variant == "ours":
                page.goto(server.url + "/", wait_until="commit")
                handle = page.wait_for_function(ALL_SHOWN, arg=count, polling="raf", timeout=60_000)
            else:
                page.goto(f"{floor_url}/{number}", wait_until="commit")
                handle = page.wait_for_function(FLOOR_SHOWN, arg=count, polling="raf", timeout=60_000)
            elapsed = float(handle.json_value())
            context.close()
            # The page's relays end with it: wait until the server let go of every node, so that
            # each load starts cold, as the floor's.
            server.web.previews.wait_for(lambda s: all(v["state"] == "idle" for v in s.values()), 15)
            if number:
                (ours if variant == "ours" else floor).append(elapsed)


# -- 2. frame rates ----------------------------------------------------------------------------------
def count_mjpeg(urls: list[str], seconds: float, warmup: float) -> float:
    """Frames per second per stream, all ``urls`` read at once (one thread each).

    Every stream is read from the moment it opens (a stream left unread piles frames up in the
    socket buffers, and reading that backlog later would count as extra frames); frames are
    counted from ``warmup`` seconds on, for ``seconds``.
    """
    counts = [0] * len(urls)
    begin = time.monotonic() + warmup
    end = begin + seconds

    def read(slot: int, url: str) -> None:
        with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
            boundary = re.search(r"boundary=(\S+)", response.headers["content-type"]).group(1)
            parser = MultipartParser(boundary.encode())
            for chunk in response.iter_raw():
                now = time.monotonic()
                frames = len(parser.feed(chunk))
                if now >= end:
                    return
                if now >= begin:
                    counts[slot] += frames

    threads = [threading.Thread(target=read, args=(i, url), daemon=True) for i, url in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + warmup + 15)
    return statistics.mean(counts) / seconds


def count_mux(url: str, cameras: int, seconds: float, warmup: float) -> float:
    """Frames per second per camera on the one multiplexed stream."""
    frames = 0
    begin = time.monotonic() + warmup
    end = begin + seconds
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
        buffer = bytearray()
        for chunk in response.iter_raw():
            buffer += chunk
            now = time.monotonic()
            offset = 0
            while len(buffer) - offset >= 6:
                name_length = int.from_bytes(buffer[offset : offset + 2], "big")
                frame_length = int.from_bytes(buffer[offset + 2 : offset + 6], "big")
                size = 6 + name_length + frame_length
                if len(buffer) - offset < size:
                    break
                offset += size
                if begin <= now < end:
                    frames += 1
            del buffer[:offset]
            if now >= end:
                break
    return frames / seconds / cameras


def count_browser(browser: object, server: WebServer, cameras: int, seconds: float, warmup: float) -> float:
    """Frames per second per camera the dashboard displayed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_function(ALL_SHOWN, arg=cameras, polling="raf", timeout=60_000)
        total = (
            "() => [...document.querySelectorAll('.card')].reduce((n, c) => n + Number(c.dataset.frames), 0)"
        )
        page.wait_for_timeout(warmup * 1000)  # settle: a measuring window, not a synchronisation
        before, started = page.evaluate(total), time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        after, elapsed = page.evaluate(total), time.monotonic() - started
        return (after - before) / elapsed / cameras
    finally:
        context.close()


def frame_rates(
    browser: object, server: WebServer, rig: Rig, rounds: int, seconds: float, warmup: float
) -> dict[str, list[float]]:
    """Frames per second per camera of every variant, ``rounds`` times in rotating order.

    Each variant opens its streams, lets ``warmup`` seconds pass (starting 16 streams at once
    leaves a backlog that would count as extra frames), then counts for ``seconds``.
    """
    cameras = rig.cameras()
    raw = [cam.stream_url for cam in cameras]
    relayed = [f"{server.url}/cameras/{cam.key}/preview.mjpg" for cam in cameras]
    variants = {
        "raw": lambda: count_mjpeg(raw, seconds, warmup),
        "relay": lambda: count_mjpeg(relayed, seconds, warmup),
        "mux": lambda: count_mux(f"{server.url}/api/previews.bin", len(cameras), seconds, warmup),
        "browser": lambda: count_browser(browser, server, len(cameras), seconds, warmup),
    }
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
            server.web.previews.wait_for(lambda s: all(v["state"] == "idle" for v in s.values()), 15)
    return out


# -- the screenshot -------------------------------------------------------------------------------------
def screenshot(path: Path) -> None:
    """The dashboard of 8 cameras after Capture All, at 1280x900 (the README's picture)."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-web-") as tmp,
        served_rig(8, Path(tmp), views=True) as (_rig, server),
        chromium() as browser,
    ):
        context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_function(ALL_SHOWN, arg=8, polling="raf", timeout=60_000)
        # The first capture of freshly started nodes is slow to fire; the second shows the usual skew.
        for number in (1, 2):
            page.click("#capture-all")
            page.wait_for_function(
                "n => document.querySelector('#capture-result').textContent.startsWith(`Capture ${n}:`)",
                arg=number,
            )
        page.wait_for_function(
            "() => document.querySelector('#gallery-title').textContent === 'Last capture: 2'"
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card')].every(c => c.dataset.frames >= 5)"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        print(f"saved {path}: {page.locator('#capture-result').inner_text()}")
        context.close()


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--cameras", type=int, default=16, help="camera nodes (default 16)")
    parser.add_argument("--screenshot", type=Path, help="save the dashboard of 8 cameras here and stop")
    args = parser.parse_args(argv)
    if args.screenshot is not None:
        screenshot(args.screenshot)
        return 0
    loads, rounds, seconds, warmup = (3, 1, 2.0, 1.0) if args.quick else (7, 3, 5.0, 2.0)
    info = machine_info(
        {"playwright": metadata.version("playwright"), "uvicorn": metadata.version("uvicorn")}
    )
    print("# Web page benchmark: time to a full dashboard, preview frame rate\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()), "\n")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-web-") as tmp,
            served_rig(args.cameras, Path(tmp), views=False) as (rig, server),
            chromium() as browser,
        ):
            n = args.cameras
            ours, floor = time_loads(browser, server, rig, loads)
            rates = frame_rates(browser, server, rig, rounds, seconds, warmup)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    med = statistics.median
    raw = med(rates["raw"])
    rows = [
        [
            f"page to all {n} previews shown (ms, median of {loads} loads)",
            f"dashboard: {med(ours):.0f} (min {min(ours):.0f}, max {max(ours):.0f})",
            f"{n} <img> of one snapshot each, straight from the nodes: {med(floor):.0f}",
            f"{med(ours) / med(floor):.2f}x",
        ]
    ]
    labels = {
        "relay": f"relayed MJPEG, {n} streams at once",
        "mux": "one multiplexed stream (what the page reads)",
        "browser": "frames the dashboard displayed",
    }
    for name, label in labels.items():
        rows.append(
            [
                f"preview frames/s per camera, {n} cameras (median of {rounds} x {seconds:g} s)",
                f"{label}: {med(rates[name]):.2f}",
                f"nodes' own MJPEG, {n} streams at once: {raw:.2f}",
                f"{med(rates[name]) / raw:.2f}x",
            ]
        )
    print(markdown_table(["measure", "ours", "floor (same run)", "ours / floor"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
