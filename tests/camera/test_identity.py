"""Tests of the node identity: each source in order, one id per state folder, persistence."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from plantimager.camera.identity import default_state_dir, node_identity
from plantimager.camera.names import validate_name

PI_CPUINFO = """processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
BogoMIPS\t: 38.40

Hardware\t: BCM2835
Revision\t: a02082
Serial\t\t: 0000000079B7FD52
Model\t\t: Raspberry Pi 3 Model B Rev 1.2
"""
X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU\n"
MACHINE_ID = "3D1219C7C4C5404AAA1F6D2A48ADFDA4\n"


@pytest.fixture(autouse=True)
def default_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The default state folder of these tests (never the user's)."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "plantimager"


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "cpuinfo": tmp_path / "cpuinfo",
        "etc": tmp_path / "etc-machine-id",
        "dbus": tmp_path / "dbus-machine-id",
        "state": tmp_path / "state",
    }


def identity(paths: dict[str, Path]) -> str:
    return node_identity(
        paths["state"], cpuinfo=paths["cpuinfo"], machine_id_files=(paths["etc"], paths["dbus"])
    )


def test_raspberry_pi_serial_comes_first(paths: dict[str, Path], default_state: Path) -> None:
    paths["cpuinfo"].write_text(PI_CPUINFO)
    paths["etc"].write_text(MACHINE_ID)
    machine_ids = (paths["etc"], paths["dbus"])
    # One node per Pi, state in the default folder: the serial as PEPI reported it, lower-cased.
    assert node_identity(cpuinfo=paths["cpuinfo"], machine_id_files=machine_ids) == "0000000079b7fd52"
    assert node_identity(default_state, cpuinfo=paths["cpuinfo"]) == "0000000079b7fd52"
    assert not default_state.exists()
    # Another state folder: another node on this Pi, so an id of its own.
    assert re.fullmatch(r"0000000079b7fd52-[0-9a-f]{6}", identity(paths))


def test_a_systemd_state_directory_is_the_default(
    paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{paths['state']}:/elsewhere")
    assert default_state_dir() == paths["state"]
    paths["cpuinfo"].write_text(PI_CPUINFO)
    assert identity(paths) == "0000000079b7fd52"  # the deployed unit passes that folder explicitly


def test_nodes_sharing_a_host_get_distinct_stable_ids(paths: dict[str, Path], tmp_path: Path) -> None:
    paths["cpuinfo"].write_text(X86_CPUINFO)
    paths["etc"].write_text(MACHINE_ID)
    first = identity(dict(paths, state=tmp_path / "node1"))
    second = identity(dict(paths, state=tmp_path / "node2"))
    assert first != second
    for value in (first, second):
        assert re.fullmatch(r"3d1219c7c4c5404a-[0-9a-f]{6}", value)
    # Restarts (new calls, reading the kept ids) give the same ids.
    assert identity(dict(paths, state=tmp_path / "node1")) == first
    assert identity(dict(paths, state=tmp_path / "node2")) == second
    # The default folder is one more node's.
    plain = node_identity(cpuinfo=paths["cpuinfo"], machine_id_files=(paths["etc"],))
    assert plain not in (first, second) and plain.startswith("3d1219c7c4c5404a-")


def test_an_unwritable_state_folder_falls_back_to_the_host_id(paths: dict[str, Path]) -> None:
    paths["etc"].write_text(MACHINE_ID)
    blocker = paths["state"].parent / "a-file"
    blocker.write_text("not a directory")
    assert identity(dict(paths, state=blocker / "state")) == "3d1219c7c4c5404a"


@pytest.mark.parametrize(
    "serial_line",
    ["Serial\t\t: 0000000000000000", "Serial\t\t: ", "Serial\t\t: not-hex", "Serial : " + "1" * 40],
)
def test_unusable_serial_falls_back_to_machine_id(paths: dict[str, Path], serial_line: str) -> None:
    paths["cpuinfo"].write_text(PI_CPUINFO.replace("Serial\t\t: 0000000079B7FD52", serial_line))
    paths["etc"].write_text(MACHINE_ID)
    assert identity(paths).startswith("3d1219c7c4c5404a-")


def test_machine_id_when_no_serial(paths: dict[str, Path]) -> None:
    paths["cpuinfo"].write_text(X86_CPUINFO)
    paths["etc"].write_text(MACHINE_ID)
    paths["dbus"].write_text("ffffffffffffffffffffffffffffffff\n")
    value = identity(paths)
    assert re.fullmatch(r"3d1219c7c4c5404a-[0-9a-f]{6}", value)
    assert value.endswith((paths["state"] / "node-id").read_text()[:6])


@pytest.mark.parametrize("etc_content", [None, "", "uninitialized\n", "0" * 32 + "\n", "abc\n"])
def test_dbus_machine_id_when_etc_unusable(paths: dict[str, Path], etc_content: str | None) -> None:
    if etc_content is not None:
        paths["etc"].write_text(etc_content)
    paths["dbus"].write_text("0123456789abcdef0123456789abcdef")
    assert identity(paths).startswith("0123456789abcdef-")


def test_persisted_id_when_nothing_else(paths: dict[str, Path]) -> None:
    first = identity(paths)  # no cpuinfo, no machine id files at all
    stored = paths["state"] / "node-id"
    assert stored.exists()
    assert len(first) == 16 and int(first, 16) >= 0
    assert stored.read_text().strip()[:16] == first
    assert os.listdir(paths["state"]) == ["node-id"]  # no temporary file left behind
    # A restart (a new call, reading the file) gives the same id; another machine a different one.
    assert identity(paths) == first
    assert node_identity(paths["state"], cpuinfo=paths["cpuinfo"], machine_id_files=()) == first
    other = dict(paths, state=paths["state"].parent / "elsewhere")
    assert identity(other) != first


def test_corrupt_persisted_id_is_replaced_and_then_stable(paths: dict[str, Path]) -> None:
    paths["state"].mkdir()
    (paths["state"] / "node-id").write_text("garbage")
    first = identity(paths)
    assert first != "garbage" and len(first) == 16
    assert identity(paths) == first
    assert os.listdir(paths["state"]) == ["node-id"]


def test_unusable_state_dir_raises(paths: dict[str, Path]) -> None:
    blocker = paths["state"].parent / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        identity(dict(paths, state=blocker / "state"))


def test_ids_are_filename_safe(paths: dict[str, Path]) -> None:
    paths["cpuinfo"].write_text(PI_CPUINFO)
    candidates = [identity(paths)]
    paths["cpuinfo"].write_text(X86_CPUINFO)
    paths["etc"].write_text(MACHINE_ID)
    candidates.append(identity(paths))
    paths["etc"].unlink()
    candidates.append(identity(paths))
    for value in candidates:
        assert validate_name(value, kind="node id") == value


def test_default_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "plantimager"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "plantimager"


def test_default_state_dir_is_used_when_none_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    value = node_identity(cpuinfo=tmp_path / "none", machine_id_files=())
    assert (tmp_path / "xdg" / "plantimager" / "node-id").read_text().startswith(value)
