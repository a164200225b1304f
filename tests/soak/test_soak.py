"""The chaos soak: a short one in ``make test``, 64 nodes for ten minutes in ``make soak``.

Each runs ``python -m soak`` in a process of its own (which mounts the dataset's tmpfs, as root or
inside a private namespace), waits for it with a deadline, and fails on any image lost or
duplicated, anything still owed or left in a spool, or a crash or hang the soak found. The soak's
table is printed (``pytest -s``) and kept in the test's folder.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent


def run_soak(tmp_path: Path, *args: str, limit: float) -> tuple[int, str]:
    """Run ``python -m soak ARGS`` until it ends (SIGTERM, then SIGKILL, at ``limit`` seconds).

    Its output is printed as it comes (seen live with ``pytest -s``) and returned.
    """
    table = tmp_path / "table.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    lines: list[str] = []
    soak = subprocess.Popen(
        [sys.executable, "-m", "soak", *args, "--work", str(tmp_path / "work"), "--table", str(table)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def pump() -> None:
        assert soak.stdout is not None
        for line in soak.stdout:
            print(line, end="", flush=True)
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = soak.wait(limit)
    except subprocess.TimeoutExpired:
        soak.send_signal(signal.SIGTERM)  # it stops every process it started, and unmounts
        try:
            code = soak.wait(60)
        except subprocess.TimeoutExpired:
            soak.kill()
            code = soak.wait(10)
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait(10)
        reader.join(10)
        if soak.stdout is not None:
            soak.stdout.close()
    return code, "".join(lines)


def check(code: int, output: str) -> None:
    """The soak printed its table, with nothing lost or duplicated, and passed."""
    lost = re.search(r"\| lost \(must be 0\)\s+\| (\d+) \|", output)
    duplicated = re.search(r"\| duplicated \(must be 0\)\s+\| (\d+) \|", output)
    assert lost and duplicated, "the soak printed no table:\n" + output[-3000:]
    assert (lost[1], duplicated[1]) == ("0", "0"), output[-5000:]
    assert code == 0, output[-5000:]


@pytest.mark.timeout(300)
def test_a_short_chaos_soak_of_16_nodes_loses_and_duplicates_nothing(tmp_path):
    code, output = run_soak(tmp_path, "--nodes", "16", "--seconds", "40", "--seed", "11", limit=240)
    check(code, output)
    assert "soak: seed 11, 16 nodes" in output
    for kind in ("node killed", "node hung", "registry restarted", "controller killed", "disk filled"):
        assert f"] {kind}: " in output, f"no {kind} fault was injected"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_ten_minute_chaos_soak_of_64_nodes_loses_and_duplicates_nothing(tmp_path):
    seed = os.environ.get("PLANTIMAGER_SOAK_SEED") or str(random.SystemRandom().randrange(1 << 31))
    # The disk must hold what ten minutes capture, with room to spare on a fast machine: 526
    # captures made 33,500 images (216 MB) and a 35 MB manifest once, which 256 MiB could not hold.
    code, output = run_soak(
        tmp_path, "--nodes", "64", "--seconds", "600", "--seed", seed, "--disk-mb", "1024", limit=1380
    )
    check(code, output)
