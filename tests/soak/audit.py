"""The soak's verdict: is every image a node stored in the dataset exactly once, with its bytes?

The truth comes from three places that do not depend on each other:

* each node's log, where its spool writes a line once an image is durably stored (before the node
  answers the capture command): what the nodes acknowledged;
* the dataset's ledger, read line by line (what the controller planned, heard, received, released)
  and its ``manifest.json``, checked against the manifest the ledger gives when replayed;
* the files: the dataset's images (their SHA-256) and what is left in each node's spool.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantimager.rig.dataset import Dataset

__all__ = ["Audit", "audit"]

#: A spool's line for an image it stored durably (plantimager.camera.spool, at DEBUG).
STORED = re.compile(r"spool \S+: stored (?P<code>[^/\s]+)/(?P<camera>\S+) \((?P<size>\d+) bytes")

Key = tuple[str, str, str]  # node name, data code, camera name on the node


@dataclass
class Audit:
    """What the soak left behind, counted and checked (every list should be empty)."""

    captures: int = 0
    attempted: int = 0
    acknowledged: int = 0
    acknowledged_to_controller: int = 0
    downloaded: int = 0
    never_stored: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    bad_checksums: list[str] = field(default_factory=list)
    owed: list[str] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)
    spool_held: list[str] = field(default_factory=list)
    released_but_held: list[str] = field(default_factory=list)
    unlogged_acks: list[str] = field(default_factory=list)

    @property
    def problems(self) -> dict[str, list[str]]:
        """Every check that failed: name -> examples."""
        checks = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "checksum mismatches": self.bad_checksums,
            "still owed": self.owed,
            "manifest": self.manifest_problems,
            "still in a spool": self.spool_held,
            "released but still in a spool": self.released_but_held,
            "acknowledged but not in a node's log": self.unlogged_acks,
        }
        if not self.acknowledged:
            checks["nothing acknowledged"] = ["no node stored anything: the soak tested nothing"]
        return {name: items for name, items in checks.items() if items}

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems


def _ledger(root: Path) -> list[dict[str, Any]]:
    records = []
    with open(root / ".rig" / "ledger.jsonl", "rb") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(record, dict):
                records.append(record)
    return records


def stored_by_nodes(logs: Mapping[str, Path], prefix: str) -> dict[Key, int]:
    """What each node's spool said it stored under data codes starting with ``prefix``: key -> size."""
    out: dict[Key, int] = {}
    for node, log in logs.items():
        if not log.exists():
            continue
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                match = STORED.search(line)
                if match and match["code"].startswith(prefix):
                    out[(node, match["code"], match["camera"])] = int(match["size"])
    return out


def _held(spools: Mapping[str, Path]) -> list[Key]:
    """The images still in the nodes' spools (those with their metadata file)."""
    held = []
    for node, spool in spools.items():
        if not spool.is_dir():
            continue
        for code in sorted(os.listdir(spool)):
            folder = spool / code
            if code.startswith(".") or not folder.is_dir():
                continue
            for name in sorted(os.listdir(folder)):
                if name.endswith(".json") and not name.startswith("."):
                    held.append((node, code, name[: -len(".json")]))
    return held


def _without_time(document: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "updated"}


def _examples(items: Iterable[Any], limit: int = 20) -> list[str]:
    return [str(item) for item in list(items)[:limit]]


def audit(dataset: Path, logs: Mapping[str, Path], spools: Mapping[str, Path]) -> Audit:
    """Check the dataset against what the nodes stored and what their spools still hold.

    Parameters
    ----------
    dataset : pathlib.Path
        The dataset folder (no controller may be using it).
    logs : mapping
        Node name -> its log file.
    spools : mapping
        Node name -> its spool folder (the node must be stopped).
    """
    result = Audit()
    records = _ledger(dataset)
    with Dataset(dataset, readonly=True) as opened:
        session, expected, owed = opened.session_id, opened.manifest(), opened.owed()
    prefix = f"{session}-d"

    shots: dict[tuple[int, str], dict[str, Any]] = {}  # (capture_no, rig camera) -> shot
    codes: dict[int, str] = {}
    acked: dict[Key, dict[str, Any]] = {}
    status: dict[Key, str] = {}
    for record in records:
        kind, number = record.get("kind"), record.get("capture_no")
        if kind == "capture":
            result.captures += 1
            codes[number] = record["data_code"]
            for shot in record["shots"]:
                shots[(number, shot["camera"])] = shot
                result.attempted += bool(shot.get("wanted", True))
            continue
        if kind == "captured":
            for camera, meta in record.get("results", {}).items():
                shot = shots[(number, camera)]
                acked[(shot["node"], codes[number], shot["camera_name"])] = meta
            continue
        shot = shots.get((number, record.get("camera")))
        if shot is not None and kind in ("received", "released", "lost"):
            status[(shot["node"], codes[number], shot["camera_name"])] = kind
    stored = stored_by_nodes(logs, prefix)
    result.acknowledged_to_controller = len(acked)
    result.unlogged_acks = _examples(sorted(set(acked) - set(stored)))
    acknowledged = set(stored) | set(acked)
    result.acknowledged = len(acknowledged)

    # The manifest on disk is the one the ledger gives, and lists every image once.
    manifest = json.loads((dataset / "manifest.json").read_text())
    if _without_time(manifest) != _without_time(expected):
        for part in ("captures", "images", "cameras", "session", "template"):
            if manifest.get(part) != expected.get(part):
                result.manifest_problems.append(f"manifest.json's {part} differ from the ledger's")
    images = manifest["images"]
    result.downloaded = len(images)
    keys = Counter((e["node"], e["data_code"], e["camera_name"]) for e in images)
    files = Counter(e["file"] for e in images)
    result.duplicated += [f"{key} listed {n} times" for key, n in keys.items() if n > 1]
    result.duplicated += [f"{name} listed {n} times" for name, n in files.items() if n > 1]
    on_disk = {p.name for p in dataset.iterdir() if not p.name.startswith(".") and p.name != "manifest.json"}
    result.duplicated += [
        f"{name}: a file the manifest does not list" for name in sorted(on_disk - set(files))
    ]
    result.manifest_problems += [f"{name}: listed but not on disk" for name in sorted(set(files) - on_disk)]
    result.lost = _examples(sorted(acknowledged - set(keys)))
    result.never_stored = sum(1 for c in expected["captures"] for _ in c["lost"])

    for entry in images:
        key = (entry["node"], entry["data_code"], entry["camera_name"])
        path = dataset / entry["file"]
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        node_said = acked.get(key, {}).get("sha256", entry["sha256"])
        size = stored.get(key, entry["size"])
        if digest != entry["sha256"] or digest != node_said or path.stat().st_size != size:
            result.bad_checksums.append(
                f"{entry['file']}: sha256 {digest[:12]}..., manifest {entry['sha256']}"
            )

    result.owed = _examples(f"{s.camera} capture {s.capture_no}: {s.status} {s.reason}" for s in owed)
    held = _held(spools)
    result.spool_held = _examples(key for key in held if key[1].startswith(prefix))
    result.released_but_held = _examples(key for key in held if status.get(key) == "released")
    return result
