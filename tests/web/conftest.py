"""Fixtures of the web tests: a real rig (registry, camera node processes, controller), the web app
served by uvicorn on 127.0.0.1, and Debian's chromium driven by Playwright.

Every node process is stopped by its pid and the server by its handle in the fixtures' teardown.
Tests synchronise on printed lines, replies, rig events and Playwright's auto-waiting, never on
fixed sleeps. A browser test that fails leaves a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from helpers.keys import RigKeys
from helpers.process import LAUNCH, WAIT, Child, dummy_node_args
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.rig import CallLimits, Rig
from plantimager.testing import serve_in_thread
from plantimager.turntable.dummy import DummyTurntable
from plantimager.turntable.server import TurntableServer
from plantimager.web import WebServer, create_app

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SMALL = "320x240"


class Node(Child):
    """``plantimager camera`` with dummy cameras, registered under ``name``."""

    def __init__(
        self, name: str, registry_url: str, home: Path, cameras: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        super().__init__([*LAUNCH, *dummy_node_args(name, registry_url, home, cameras, SMALL), *extra])

    def ready(self) -> Node:
        """Wait until the node serves and is registered."""
        self.wait_for(rf"^registered as {re.escape(self.name)} with ")
        return self

    def stop(self, timeout: float = WAIT) -> None:
        """SIGINT by pid, then SIGKILL if it does not exit in time."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()


class Rigging:
    """A registry, camera nodes, a rig and its web app served on a free loopback port.

    Parameters
    ----------
    home : Path
        Folder of the nodes' spools and of the captures.
    refresh : float
        The app's periodic re-check of the rig (long: only rig events make the page change).
    keys : RigKeys, optional
        Secure everything with these keys: registry, nodes and rig talk CurveZMQ.
    """

    def __init__(self, home: Path, *, refresh: float = 30.0, keys: RigKeys | None = None) -> None:
        self.home = home
        self.captures = home / "captures"
        self.keys = keys
        self.ctx = zmq.Context()
        controller = keys.controller if keys is not None else None
        self.registry = DeviceRegistry(self.ctx, "127.0.0.1", 0, heartbeat_interval=0.2, keys=controller)
        self.registry.start()
        self.nodes: dict[str, Node] = {}
        self.rig: Rig | None = None
        self.server: WebServer | None = None
        self.refresh = refresh

    def spawn(self, *names: str, cameras: int = 1, extra: tuple[str, ...] = ()) -> list[Node]:
        """Start camera nodes (``extra``: more arguments) and wait until each is registered."""
        keyed = (lambda n: tuple(self.keys.node_args(n))) if self.keys is not None else (lambda n: ())
        started = [
            Node(n, self.registry.url, self.home / "nodes" / n, cameras, extra + keyed(n)) for n in names
        ]
        for node in started:
            self.nodes[node.name] = node
        return [node.ready() for node in started]

    def serve(self, expect: int, auth: Any = None) -> Rigging:
        """Start the rig, wait for ``expect`` cameras, and serve the web app (with a login if ``auth``)."""
        limits = CallLimits(connect=2000, call=1500, capture=20_000, transfer=5000)
        controller = self.keys.controller if self.keys is not None else None
        self.rig = Rig(
            self.registry.url, context=self.ctx, limits=limits, health_interval=0.3, keys=controller
        ).start()
        assert self.rig.wait_for_cameras(expect, 20), self.rig.nodes()
        app = create_app(self.rig, captures=self.captures, refresh=self.refresh, auth=auth)
        self.server = WebServer(app, "127.0.0.1", 0).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def web(self) -> Any:
        assert self.server is not None
        return self.server.web

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.rig is not None:
            self.rig.close()
        for node in self.nodes.values():
            node.stop(10)
        self.registry.stop()
        self.ctx.destroy(linger=0)


@contextlib.contextmanager
def rigging(
    home: Path, nodes: list[str], *, refresh: float = 30.0, auth: Any = None, keys: RigKeys | None = None
) -> Iterator[Rigging]:
    """A :class:`Rigging` with ``nodes`` started and served; everything stopped afterwards."""
    rig = Rigging(home, refresh=refresh, keys=keys)
    try:
        rig.spawn(*nodes)
        yield rig.serve(len(nodes), auth)
    finally:
        rig.close()


def error_of(response: httpx.Response, status: int) -> str:
    """The error message of an API answer that must have ``status``: JSON, a non-empty text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message
    return message


def job_ended(client: httpx.Client, kind: str) -> dict[str, Any]:
    """Follow the event stream until the ``kind`` job (download, scan) is done or failed; that state.

    The stream sends each job's current state first, so a job that ended before is seen too.
    """
    name = ""
    with client.stream("GET", "/api/events") as events:
        for line in events.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == kind:
                state = json.loads(line[6:])
                if state["state"] in ("done", "failed"):
                    return state
    raise AssertionError(f"the event stream ended before the {kind} ended")


def download_done(client: httpx.Client) -> dict[str, Any]:
    """Follow the event stream until a download is done; its final state."""
    state = job_ended(client, "download")
    assert state["state"] == "done", state
    return state


#: The simulated cameras' options to stand on the simulated turntable ``table``, small frames.
ON_TABLE = ("--backend-option", "turntable=table", "--backend-option", "render_size=[160,120]")


@contextlib.contextmanager
def scan_rigging(home: Path, auth: Any = None) -> Iterator[Rigging]:
    """Two simulated cameras (node1, node2) on a simulated turntable at 60 deg/s (a third of a turn
    takes 2 s), served (with a login if ``auth``); everything stopped afterwards."""
    bundle = Rigging(home)
    table = TurntableServer(bundle.ctx, "tcp://127.0.0.1:0", backend=DummyTurntable(), speed=60.0)
    try:
        with serve_in_thread(table):
            assert table.register_to_registry("turntable", "table", bundle.registry.url) == "table"
            bundle.spawn("node1", "node2", extra=ON_TABLE)
            yield bundle.serve(2, auth)
    finally:
        bundle.close()
        table.close()


def log_in_page(page: Any, url: str, name: str, password: str) -> None:
    """Open the dashboard at ``url`` in ``page``: sent to the login form, log in as ``name``."""
    from playwright.sync_api import expect

    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    page.fill("#login-account", name)
    page.fill("#login-password", password)
    page.click("#login-submit")


@pytest.fixture(scope="session")
def make_rigging() -> Callable[..., contextlib.AbstractContextManager[Rigging]]:
    """``with make_rigging(home, ["node1", ...]) as bundle:`` a served rig (see :func:`rigging`)."""
    return rigging


@pytest.fixture(scope="module")
def http(request: pytest.FixtureRequest) -> Iterator[Callable[[str], httpx.Client]]:
    """``http(base_url)``: an httpx client of the live server (closed at the end of the module)."""
    clients: list[httpx.Client] = []

    def make(base_url: str) -> httpx.Client:
        client = httpx.Client(base_url=base_url, timeout=20)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- the browser ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (fails, never skips, when chromium is missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package. `make test` "
            "installs it (apt-get install chromium); or run `make browsers` once."
        )
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do (new_page's 15 s): a loaded CI machine is slow, and a
    # wait ends as soon as the page is right.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, Any]]()


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``new_page(width=1280, height=900, javascript=True)``: a page in a fresh browser context.

    Every page is screenshotted into ``test-artifacts/`` if the test fails; JavaScript errors of
    the page fail the test.
    """
    contexts: list[Any] = []
    pages: list[Any] = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 900, *, javascript: bool = True) -> Any:
        context = browser.new_context(
            viewport={"width": width, "height": height}, java_script_enabled=javascript
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        pages.append(page)
        return page

    yield make
    if _failed(request.node):
        ARTIFACTS.mkdir(exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
        for number, page in enumerate(pages):
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{stem}-{number}.png"), full_page=True)
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
