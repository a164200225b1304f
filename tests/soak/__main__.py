"""``python -m soak``: run a chaos soak and print its table; exit status 1 if anything was lost.

Run from the repository with ``PYTHONPATH=tests``. It needs to mount a tmpfs: as root it does so
directly; otherwise it runs itself again inside a private user and mount namespace (``unshare``),
where it may, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import random
import signal
import sys
from pathlib import Path

from .disk import can_mount, unshare_prefix
from .engine import SoakConfig, run_soak

_PR_SET_PDEATHSIG = 1
#: Set in the environment of a run started inside a private namespace.
_INSIDE = "PLANTIMAGER_SOAK_UNSHARED"


def ending_with(parent: int) -> None:
    """Have SIGTERM sent to this process when its parent dies (Linux); at once if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the soak, print its table; 0 if nothing was lost or duplicated."""
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--nodes", type=int, default=16, help="camera node processes (default 16)")
    parser.add_argument("--seconds", type=float, default=45.0, help="how long faults are injected")
    parser.add_argument("--seed", type=int, default=None, help="the injector's seed (default: random)")
    parser.add_argument("--disk-mb", type=int, default=64, help="size of the dataset's tmpfs, MiB")
    parser.add_argument("--resolution", default="160x120", help="still resolution of the cameras")
    parser.add_argument("--work", type=Path, default=None, help="folder for logs and spools (kept)")
    parser.add_argument("--table", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if not can_mount() and not os.environ.get(_INSIDE):
        prefix = unshare_prefix()
        if not prefix:
            print("soak: cannot mount a tmpfs (not root, and no unshare): giving up", file=sys.stderr)
            return 2
        print("soak: not root: running inside a private user and mount namespace to mount the tmpfs")
        command = [*prefix, sys.executable, "-m", "soak", *(argv or sys.argv[1:]), "--seed", str(seed)]
        os.environ[_INSIDE] = "1"
        os.execvp(command[0], command)
    # SIGTERM ends the soak like Ctrl-C: every process it started is stopped, the tmpfs unmounted;
    # and it is sent if whatever started the soak dies first (a test runner killed, say).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = os.getppid()
    ending_with(parent)
    config = SoakConfig(
        nodes=args.nodes,
        seconds=args.seconds,
        seed=seed,
        disk_mb=args.disk_mb,
        resolution=args.resolution,
        work=args.work,
    )
    result = run_soak(config, say=lambda line: print(line, flush=True))
    table = result.table()
    print(table, flush=True)
    if args.table is not None:
        args.table.write_text(table + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
