"""``plantimager web`` as a command, and the hook the demo uses."""

from __future__ import annotations

import os
import signal
import socket
import sys

import httpx
import pytest

from helpers.process import LAUNCH, Child
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.rig import Rig
from plantimager.web import start_web

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry(ctx):
    server = DeviceRegistry(ctx, "127.0.0.1", 0, heartbeat_interval=0.2)
    server.start()
    yield server
    server.stop()


def test_plantimager_web_serves_the_page_until_interrupted(registry, tmp_path):
    command = Child(
        [*LAUNCH, "web", "--registry", registry.url, "--port", "0", "--captures", str(tmp_path / "captures")]
    )
    try:
        match = command.wait_for(r"^serving the rig of (\S+) at (http://127\.0\.0\.1:\d+)/$")
        assert match.group(1) == registry.url
        url = match.group(2)
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "Capture All" in page.text
        assert httpx.get(url + "/api/cameras", timeout=10).json()["count"] == 0
        assert httpx.get(url + "/static/app.js", timeout=10).status_code == 200
        os.kill(command.pid, signal.SIGINT)
        assert command.popen.wait(15) == 0
        command.wait_for(r"^web page stopped$")
    finally:
        command.kill()


def test_a_taken_port_is_a_clear_error(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        command = Child([*LAUNCH, "web", "--registry", registry.url, "--port", str(port)])
        try:
            command.wait_for(rf"^Error: cannot serve on 127\.0\.0\.1:{port}: Address already in use$")
            assert command.popen.wait(15) == 1
        finally:
            command.kill()


def test_the_demo_hook_serves_a_rig_and_stops(registry, tmp_path, ctx):
    said: list[str] = []
    with Rig(registry.url, context=ctx) as rig:
        stop = start_web(rig, tmp_path / "captures", port=0, say=said.append)
        try:
            assert len(said) == 1 and said[0].startswith("web page: http://127.0.0.1:")
            url = said[0].split(": ", 1)[1]
            assert httpx.get(url, timeout=10).status_code == 200
            assert httpx.get(url + "api/gallery", timeout=10).json()["capture"] is None
        finally:
            stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=5)


def test_the_web_stack_loads_only_for_the_web_command():
    # Every command module is imported by the `plantimager` group; starlette stays out of the others.
    code = "import sys; from plantimager.cli.main import main; print('starlette' in sys.modules)"
    check = Child([sys.executable, "-c", code])
    try:
        assert check.wait_for(r"^(True|False)$").group(1) == "False"
    finally:
        check.kill()
