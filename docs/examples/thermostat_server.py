"""A small RPC server: a thermostat with a JSON method, a buffer method and a notifying property.

Run it next to a registry (see ``docs/rpc.md``)::

    plantimager registry --bind tcp://127.0.0.1:5555 &
    python docs/examples/thermostat_server.py --registry tcp://127.0.0.1:5555

It prints the address it serves on (and the name the registry accepted), then serves until
Ctrl-C, SIGTERM or a remote ``stop_server()``. The :class:`Thermostat` interface defined here is
also imported by ``thermostat_client.py``.
"""

from __future__ import annotations

import abc
import argparse
import signal
import sys
import threading
from types import FrameType

import numpy as np
import zmq

from plantimager.commons.RPC import RPCProperty, RPCServer, RPCSignal

__all__ = ["DEVICE_TYPE", "Thermostat", "ThermostatServer", "main"]

#: Device type under which the server registers, and which the client looks for.
DEVICE_TYPE = "thermostat"


class Thermostat(abc.ABC):
    """What a thermostat offers over RPC; shared by the server and the client proxy."""

    targetChanged = RPCSignal(float)
    """Emitted with the new target temperature whenever it changes."""

    @RPCProperty(notify=targetChanged)
    @abc.abstractmethod
    def target(self) -> float:
        """Target temperature, in degrees Celsius."""

    @target.setter
    @abc.abstractmethod
    def target(self, value: float) -> None: ...

    @RPCProperty
    @abc.abstractmethod
    def unit(self) -> str:
        """Unit of every temperature (read-only: the property has no setter)."""

    @abc.abstractmethod
    def echo(self, text: str) -> str:
        """Return ``text`` with a prefix (a JSON method).

        Parameters
        ----------
        text : str
            Any text.

        Returns
        -------
        str
            ``"Echo: " + text``.
        """

    @abc.abstractmethod
    def read_sensor(self, samples: int = 8) -> tuple[memoryview, dict]:
        """Return the last ``samples`` temperature readings (a buffer method).

        Parameters
        ----------
        samples : int
            How many readings, 1 to 1000.

        Returns
        -------
        memoryview
            The readings as little-endian float32 values.
        dict
            ``{"dtype": "<f4", "samples": samples}``.
        """


class ThermostatServer(Thermostat, RPCServer):
    """A simulated thermostat served over RPC.

    Parameters
    ----------
    context : zmq.Context
        Context for the server's sockets.
    url : str
        Where to listen, e.g. ``tcp://127.0.0.1:0``.
    """

    def __init__(self, context: zmq.Context, url: str) -> None:
        RPCServer.__init__(self, context, url)
        self._target = 20.0
        self._rng = np.random.default_rng(0)

    @RPCProperty(notify=Thermostat.targetChanged, auto_notify=True)
    def target(self) -> float:
        """Target temperature, in degrees Celsius (-50 to 100)."""
        return self._target

    @target.setter
    def target(self, value: float) -> None:
        if not -50.0 <= value <= 100.0:
            raise ValueError(f"target must be between -50 and 100 degrees, got {value}")
        self._target = float(value)  # auto_notify emits targetChanged when the value changed

    @RPCProperty
    def unit(self) -> str:
        """Unit of every temperature."""
        return "celsius"

    @RPCServer.register_method_json
    def echo(self, text: str) -> str:
        """Return ``text`` with a prefix."""
        return f"Echo: {text}"

    @RPCServer.register_method_buffer(timeout=2000)
    def read_sensor(self, samples: int = 8) -> tuple[memoryview, dict]:
        """Return ``samples`` simulated readings around the target, as float32 values."""
        if not 1 <= samples <= 1000:
            raise ValueError(f"samples must be between 1 and 1000, got {samples}")
        readings = (self._target + self._rng.normal(0.0, 0.2, samples)).astype("<f4")
        return memoryview(readings), {"dtype": "<f4", "samples": samples}


def main(argv: list[str] | None = None) -> int:
    """Serve a thermostat until Ctrl-C, SIGTERM or a remote stop.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="tcp://127.0.0.1:0", help="where to listen (default: %(default)s)")
    parser.add_argument("--registry", help="registry to register with, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--name", default=DEVICE_TYPE, help="name proposed to the registry")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    context = zmq.Context()
    server = ThermostatServer(context, args.bind)
    print(f"serving on {server.address}", flush=True)
    if args.registry:
        name = server.register_to_registry(DEVICE_TYPE, args.name, args.registry)
        if name:
            print(f"registered as {name} with {args.registry}", flush=True)
        else:
            print(f"registry {args.registry} not reachable yet; will keep trying", flush=True)

    def serve() -> None:
        try:
            server.serve_forever()
        finally:
            stop.set()  # a remote stop_server() ends the process too

    thread = threading.Thread(target=serve, name="thermostat-server")
    thread.start()
    stop.wait()
    server.stop_server()  # also unregisters from the registry
    thread.join(timeout=10)
    context.term()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
