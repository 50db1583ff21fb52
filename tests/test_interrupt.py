"""Honest interrupts (#15): Ctrl-C during `frp commit` says whether the run was saved,
found by looking for the run in the store, not guessed: "interrupted after the run was
saved (run N)" when the interrupt came after the commit point, "interrupted; nothing was
written" before it; exit code 130 either way, one line.

The interrupt is injected where the commit happens: a KeyboardInterrupt (what Python
raises on SIGINT) or DuckDB's InterruptException (what a query interrupted by SIGINT
raises) right after the run's transaction commits, or right before it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

import store.commits
from cli.main import main as frp_main
from tests.db_helpers import digest

INTERRUPTS = [KeyboardInterrupt, duckdb.InterruptException]


def interrupted(capsys: pytest.CaptureFixture[str], db: Path) -> str:
    code = frp_main(["commit", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 130, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frp: interrupted"), err
    return lines[0]


def runs(db: Path) -> list[int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_interrupt_right_after_the_commit_point(
    demo_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    interrupt: type[BaseException],
) -> None:
    real = store.commits.transaction

    @contextmanager
    def then_interrupt(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        with real(con):
            yield con
        raise interrupt()  # the transaction has committed

    monkeypatch.setattr(store.commits, "transaction", then_interrupt)
    before = runs(demo_db)
    line = interrupted(capsys, demo_db)
    after = runs(demo_db)
    assert len(after) == len(before) + 1
    assert line == f"frp: interrupted after the run was saved (run {after[-1]})"


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_interrupt_right_before_the_commit_point(
    demo_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    interrupt: type[BaseException],
) -> None:
    real = store.commits._write

    def write_then_interrupt(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # every row written, the transaction not yet committed
        raise interrupt()

    monkeypatch.setattr(store.commits, "_write", write_then_interrupt)
    before = digest(demo_db)
    assert interrupted(capsys, demo_db) == "frp: interrupted; nothing was written"
    assert digest(demo_db) == before
