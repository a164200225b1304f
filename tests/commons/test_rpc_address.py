"""URL parsing and advertised addresses: hyphenated hosts, IPv6 literals, wildcard binds."""

from __future__ import annotations

import socket
import threading

import psutil
import pytest

from helpers.rpc_example import ThermostatClient, ThermostatServer, serving
from plantimager.commons.rpc.address import advertised_host, parse_url


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("tcp://romi-cam2.local:1234", "romi-cam2.local", 1234),
        ("tcp://romi-cam2.local", "romi-cam2.local", None),
        ("tcp://10.10.10.2:10345", "10.10.10.2", 10345),
        ("tcp://[::1]:5555", "::1", 5555),
        ("tcp://*:0", "*", 0),
        ("tcp://*:*", "*", 0),
        ("tcp://localhost", "localhost", None),
    ],
)
def test_parse_url(url, host, port):
    endpoint = parse_url(url)
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("tcp", host, port)


def test_signal_endpoint_keeps_hyphenated_host():
    assert parse_url("tcp://romi-cam2.local:1234").with_port(40001) == "tcp://romi-cam2.local:40001"
    assert parse_url("tcp://[::1]:1").with_port(2) == "tcp://[::1]:2"


@pytest.mark.parametrize("bad", ["", "romi-cam2:1234", "tcp://", "tcp://host:99999", "tcp://a:b", 42])
def test_parse_url_refuses_bad_urls_clearly(bad):
    with pytest.raises(ValueError, match="URL"):
        parse_url(bad)


def test_wildcard_bind_advertises_an_address_of_this_machine(ctx, monkeypatch):
    monkeypatch.delenv("PLANTIMAGER_ADVERTISE_HOST", raising=False)
    srv = ThermostatServer(ctx, "tcp://*:0")
    try:
        host = srv.address.removeprefix("tcp://").rsplit(":", 1)[0]
        assert host not in ("*", "0.0.0.0", "")
        ours = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs} | {
            socket.gethostname(),
            "127.0.0.1",
        }
        assert host in ours
        assert srv.address.endswith(f":{srv.port}")
    finally:
        srv.stop_server()


def test_wildcard_bind_serves_calls_and_signals_on_loopback(ctx):
    srv = ThermostatServer(ctx, "tcp://*:0")
    with serving(srv), ThermostatClient(ctx, f"tcp://127.0.0.1:{srv.port}") as cli:
        arrived = threading.Event()
        cli.targetChanged.connect(lambda v: arrived.set())
        cli.target = 3.0
        assert arrived.wait(5)


def test_advertise_override(monkeypatch):
    monkeypatch.setenv("PLANTIMAGER_ADVERTISE_HOST", "cam-07.local")
    assert advertised_host("*") == "cam-07.local"
    assert advertised_host("10.0.0.5") == "10.0.0.5"


def test_host_names_work_end_to_end(ctx):
    srv = ThermostatServer(ctx, "tcp://localhost:0")
    assert srv.address == f"tcp://localhost:{srv.port}"
    with serving(srv), ThermostatClient(ctx, f"tcp://localhost:{srv.port}") as cli:
        arrived = threading.Event()
        cli.targetChanged.connect(lambda v: arrived.set())
        cli.target = 4.0
        assert arrived.wait(5)
        assert cli.echo("named") == "Echo: named"
