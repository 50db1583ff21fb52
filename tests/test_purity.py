"""The house is layered, and nothing imports upwards.

Bottom to top: ``engine`` (pure: polars and numpy, nothing of the store or the
dashboard), ``store`` (DuckDB, no dashboard), then the command line (``cli``) and the
dashboard (``ui``, ``pages``). ``LAYERS`` says what each package may not import.

Two checks: every file of a package is parsed and its import statements inspected
(catches an import hidden in a function that a test run never reaches), and a fresh
interpreter imports every engine module and lists what landed in ``sys.modules``
(catches the same modules arriving indirectly through a third-party package).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE_FILES = sorted((ROOT / "engine").glob("*.py"))
FORBIDDEN = frozenset({"streamlit", "duckdb", "altair"})
#: Top-level modules each package must not import: the layers above it, and the
#: libraries that belong to them.
LAYERS: dict[str, frozenset[str]] = {
    "engine": FORBIDDEN | {"store", "ui", "cli", "pages", "bench", "app"},
    "store": frozenset({"streamlit", "altair", "ui", "cli", "pages", "bench", "app"}),
    "cli": frozenset({"streamlit", "altair", "ui", "pages", "app"}),
}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in a parsed file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    return [
        (line, name)
        for line, name in imported_modules(ast.parse(source))
        if name.split(".")[0] in FORBIDDEN
    ]


def test_the_engine_has_modules() -> None:
    names = {p.stem for p in ENGINE_FILES}
    assert {"assign", "matching", "policies", "optimal", "schema", "rules"} <= names


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_engine_module_imports_no_ui_or_store(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import streamlit as st", [(1, "streamlit")]),
        ("import os\nimport duckdb", [(2, "duckdb")]),
        ("from altair.vegalite import v5", [(1, "altair.vegalite")]),
        ("def f():\n    import streamlit.components.v1", [(2, "streamlit.components.v1")]),
        ("import polars, altair", [(1, "altair")]),
        ("from engine import rules\nimport streamlit_extras", []),
        ("from . import duckdb", []),  # a relative import is the engine's own module
    ],
)
def test_the_static_check_sees_every_form_of_import(
    source: str, found: list[tuple[int, str]]
) -> None:
    assert forbidden_imports(source) == found


def test_importing_the_whole_engine_loads_no_ui_or_store() -> None:
    modules = ", ".join(f"engine.{p.stem}" for p in ENGINE_FILES if p.stem != "__init__")
    code = (
        f"import {modules}; import sys; "
        "print(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    files = _package_files(package)
    assert files, package
    found = [
        (str(path.relative_to(ROOT)), line, name)
        for path in files
        for line, name in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if name.split(".")[0] in LAYERS[package]
    ]
    assert found == []


def test_the_command_line_has_its_shared_module() -> None:
    assert {"main.py", "args.py"} <= {p.name for p in _package_files("cli")}
