"""Long functions in the engine and the store say why they are long.

A function over ``MAX_LINES`` lines is hard to read and to test in parts; sometimes it is
still the clearest shape (a hot loop inlined for speed, a schema as one statement). Such
a function carries a docstring line that starts with ``Long:`` and gives the reason, so
the next reader knows it was a choice, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 80
PACKAGES = ("engine", "store")


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int, bool]]:
    """(name, lines, has a ``Long:`` reason) of every function over ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                doc = ast.get_docstring(node) or ""
                reason = any(line.strip().startswith("Long:") for line in doc.splitlines())
                found.append((node.name, lines, reason))
    return found


def _files() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_long_function_says_why(path: Path) -> None:
    unexplained = [
        (name, lines)
        for name, lines, reason in long_functions(path.read_text(encoding="utf-8"))
        if not reason
    ]
    assert unexplained == []


def test_the_check_counts_lines_and_reads_the_reason() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(90))
    bare = f"def f():\n{body}\n"
    explained = f'def g():\n    """Does g.\n\n    Long: one statement per case.\n    """\n{body}\n'
    short = "def h():\n    return 1\n"
    assert long_functions(bare) == [("f", 91, False)]
    assert long_functions(explained) == [("g", 95, True)]
    assert long_functions(short) == []
