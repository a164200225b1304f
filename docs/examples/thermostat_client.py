"""A small RPC client: finds the thermostat, calls each member, and watches a signal.

With a registry (see ``docs/rpc.md``)::

    python docs/examples/thermostat_client.py --registry tcp://127.0.0.1:5555

or straight to a server address printed by ``thermostat_server.py``::

    python docs/examples/thermostat_client.py --url tcp://127.0.0.1:10345

Exits with 0 when every step worked.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time

import numpy as np
import zmq
from thermostat_server import DEVICE_TYPE, Thermostat  # the example's directory is on sys.path

from plantimager.commons.errors import RegistryError, RPCTimeoutError
from plantimager.commons.registry import list_devices
from plantimager.commons.RPC import RPCClient

__all__ = ["ThermostatClient", "find_thermostat", "main"]


@RPCClient.register_interface(Thermostat)
class ThermostatClient(Thermostat, RPCClient):
    """Proxy of a remote :class:`Thermostat`."""


def find_thermostat(context: zmq.Context, registry_url: str, wait: float) -> str:
    """Return the address of the first thermostat the registry lists.

    Parameters
    ----------
    context : zmq.Context
        Context for the request sockets.
    registry_url : str
        Address of the registry.
    wait : float
        Seconds to keep asking while no thermostat is registered yet.

    Raises
    ------
    RegistryError
        If the registry does not answer, or no thermostat appears in time.
    """
    deadline = time.monotonic() + wait
    while True:
        devices = list_devices(context, registry_url, device_type=DEVICE_TYPE)
        if devices:
            print(f"found {devices[0].name} at {devices[0].addr}", flush=True)
            return devices[0].addr
        if time.monotonic() >= deadline:
            raise RegistryError(f"no {DEVICE_TYPE} registered with {registry_url} after {wait} s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Exercise every member of a remote thermostat.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on failure (the reason is printed on stderr).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--registry", help="find the thermostat through this registry")
    where.add_argument("--url", help="address of the thermostat server")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the server to appear")
    args = parser.parse_args(argv)

    context = zmq.Context()
    try:
        url = args.url or find_thermostat(context, args.registry, args.wait)
        with ThermostatClient(context, url, timeout=2000) as thermostat:
            # A JSON method: the result comes back as JSON.
            print(f"echo: {thermostat.echo('hello')}", flush=True)

            # A buffer method: a zero-copy memoryview plus an info dict.
            data, info = thermostat.read_sensor(4)
            readings = np.frombuffer(data, dtype=info["dtype"])
            print(f"read_sensor: {len(readings)} readings, mean {readings.mean():.1f}", flush=True)

            # A property, and its change signal (handlers run on the client's signal thread).
            before = thermostat.target
            print(f"target: {before} {thermostat.unit}", flush=True)
            received: queue.Queue[float] = queue.Queue()
            thermostat.targetChanged.connect(received.put)
            thermostat.target = before + 1.5
            try:
                value = received.get(timeout=5)
            except queue.Empty:
                raise RPCTimeoutError("no targetChanged signal within 5 s") from None
            print(f"signal targetChanged: {value}", flush=True)

            # A remote failure raises: here a ValueError raised by the server's setter.
            try:
                thermostat.target = 1000.0
            except ValueError as exc:
                print(f"refused: {exc}", flush=True)
    except (RegistryError, RPCTimeoutError) as exc:
        print(f"thermostat_client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
