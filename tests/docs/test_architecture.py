"""The structure of the source: layers, no import circles, short modules, private names kept private.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked by import-linter;
the tests below run it on the source, and on a copy of the source with one violation planted, to show
that a broken contract fails. The picture in ``docs/architecture.md`` must match the imports.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "plantimager"
MAX_LINES = 500

pytestmark = pytest.mark.timeout(120)


def lint_imports(source_root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the ``plantimager`` package found under ``source_root``."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=source_root,
        timeout=100,
        check=False,
    )


def planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    """Copy the source to ``tmp_path`` and append ``line`` to ``module`` (a path below plantimager/)."""
    target = tmp_path / "src"
    shutil.copytree(SRC, target / "plantimager", ignore=shutil.ignore_patterns("__pycache__"))
    with open(target / "plantimager" / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n{line}\n")
    return target


def test_the_import_contracts_hold() -> None:
    result = lint_imports(SRC.parent, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_import_from_a_higher_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    source = planted_copy(tmp_path, "commons/errors.py", "from plantimager.web import app  # noqa")
    result = lint_imports(source, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "Packages only import the layers below them BROKEN" in result.stdout
    assert "plantimager.commons.errors -> plantimager.web.app" in result.stdout


def test_the_rpc_core_may_not_import_the_registry(tmp_path: Path) -> None:
    source = planted_copy(tmp_path, "commons/rpc/server.py", "from ..registry import link  # noqa")
    result = lint_imports(source, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "plantimager.commons.rpc.server -> plantimager.commons.registry.link" in result.stdout


def test_an_import_circle_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    # The node and its runner once imported each other; planting that circle again must fail.
    source = planted_copy(tmp_path, "camera/node.py", "from . import runner  # noqa")
    result = lint_imports(source, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "No import circles, between packages or between the modules of one package BROKEN" in result.stdout
    assert "plantimager.camera" in result.stdout and ".runner -> .node" in result.stdout


def source_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in source_modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def private_imports(path: Path, base: Path = SRC) -> list[str]:
    """``from x import _name`` statements in ``path`` (dunder names such as ``__version__`` are public)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            where = f"{path.relative_to(base)}:{node.lineno}"
            source = "." * node.level + (node.module or "")
            found += [
                f"{where}: from {source} import {a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    found = [line for path in source_modules() for line in private_imports(path)]
    assert found == []


def test_the_private_name_check_finds_one(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("from plantimager.commons.rpc.server import _something\n")
    found = private_imports(planted, tmp_path)
    assert found == ["planted.py:1: from plantimager.commons.rpc.server import _something"]


def test_the_architecture_picture_matches_the_imports() -> None:
    spec = importlib.util.spec_from_file_location("architecture_tool", ROOT / "tools" / "architecture.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = tool.diagram(tool.dependencies())
    assert tool.current_document(text, block) == text, "run: python tools/architecture.py --write"
    # The picture shows the layering the contracts enforce: the RPC core never points at the registry.
    assert "commons_registry --> commons_rpc" in block
    assert "commons_rpc --> commons_registry" not in block
