"""Honest interrupts (#15): Ctrl-C during `frp commit` says whether the run was saved,
found by looking for the run in the store, not guessed: "interrupted after the run was
saved (run N)" when the interrupt came after the commit point, "interrupted; nothing was
written" before it; exit code 130 either way, one line.

The interrupt is injected where the commit happens: a KeyboardInterrupt (what Python
raises on SIGINT), DuckDB's InterruptException or its RuntimeError "Query interrupted"
(what a query stopped by SIGINT raises) right after the run's transaction commits, or
right before it does; and a real SIGINT is sent to `frp commit` processes.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import duckdb
import pytest

import store.commits
from cli.main import main as frp_main
from engine.rules import DEFAULT_RULES_PATH
from tests.db_helpers import digest

#: Ctrl-C as Python raises it, as DuckDB does for a query it stopped, and as DuckDB does
#: when the stopped query was feeding a Polars or Arrow result.
INTERRUPTS = [
    KeyboardInterrupt,
    duckdb.InterruptException,
    partial(RuntimeError, "Query interrupted"),
]


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
    interrupt: Callable[[], BaseException],
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
    interrupt: Callable[[], BaseException],
) -> None:
    real = store.commits._write

    def write_then_interrupt(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # every row written, the transaction not yet committed
        raise interrupt()

    monkeypatch.setattr(store.commits, "_write", write_then_interrupt)
    before = digest(demo_db)
    assert interrupted(capsys, demo_db) == "frp: interrupted; nothing was written"
    assert digest(demo_db) == before


def test_a_ctrl_c_a_library_turns_into_another_error_is_still_an_interrupt(
    demo_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy turns a KeyboardInterrupt raised inside a structured-array comparison into
    "TypeError: Cannot compare structured arrays" (seen when a real SIGINT landed there);
    a Ctrl-C received is an interrupt whatever error it surfaces as."""
    real = store.commits._write

    def swallowed_by_a_library(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # every row written, the transaction not yet committed
        try:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C; its handler runs at once
        except KeyboardInterrupt:
            raise TypeError("Cannot compare structured arrays unless ...") from None
        raise AssertionError("SIGINT did not arrive")

    monkeypatch.setattr(store.commits, "_write", swallowed_by_a_library)
    before = digest(demo_db)
    assert interrupted(capsys, demo_db) == "frp: interrupted; nothing was written"
    assert digest(demo_db) == before


def test_sigint_at_many_points_says_what_the_store_holds(demo_db: Path, tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT to an `frp commit` process) later and later into the commit,
    each on a fresh copy of the store, until the commit finishes first: whatever the
    process said is what the store holds afterwards."""
    frp = str(Path(sys.executable).parent / "frp")
    env = {k: v for k, v in os.environ.items() if k not in ("FRP_DB", "FRP_DEBUG")}
    said: set[str] = set()
    history = runs(demo_db)  # the demo's own runs, made before this test
    for step in range(24):
        db = tmp_path / f"copy-{step}.duckdb"
        shutil.copy(demo_db, db)
        proc = subprocess.Popen(
            [frp, "commit", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        time.sleep(0.5 + 0.25 * step)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        saved = [r for r in runs(db) if r not in history]
        if proc.returncode == 0:  # finished before the signal
            assert f"run {saved[-1]} committed" in out
            break
        if "Traceback" in err:  # still starting Python, before the command began
            assert saved == [] and "from cli.main import" in err, err
            continue
        assert proc.returncode == 130 and len(err.splitlines()) == 1, err
        if saved:
            assert err.strip() == f"frp: interrupted after the run was saved (run {saved[-1]})"
            said.add("saved")
            break
        assert err.strip() == "frp: interrupted; nothing was written"
        said.add("nothing")
    assert "nothing" in said  # at least one interrupt landed inside the command


# --- every other writing command (#15) ----------------------------------------------------

NEW_CUSTOMER = (
    "tenant_id,name,country,language,seats,workloads,gateway,contact_email\n"
    "NEW1,Quillon Freight AB,SE,sv,800,exchange;teams,true,it@quillon.example\n"
)


def _active_tenant(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT tenant_id FROM referrals WHERE status = 'active' AND outcome = 'frp' "
            "ORDER BY referral_id LIMIT 1"
        ).fetchall()[0][0]
    finally:
        con.close()


def _argv(name: str, db: Path, tmp_path: Path) -> list[str]:
    if name == "import":
        csv = tmp_path / "new.csv"
        csv.write_text(NEW_CUSTOMER, encoding="utf-8")
        return ["import", "--customers", str(csv)]
    if name == "decline":
        return ["referral", "decline", _active_tenant(db), "--reason", "at_capacity"]
    if name == "rules set":
        rules = tmp_path / "rules.toml"
        rules.write_text(DEFAULT_RULES_PATH.read_text("utf-8").replace("= 150", "= 300"), "utf-8")
        return ["rules", "set", str(rules), "--note", "larger customers"]
    return {"expire": ["expire"], "purge": ["purge", "T000001"]}[name]


#: The store function each command's transaction runs, by command.
STORE_WRITES = {
    "expire": ("store.lifecycle", "expire"),
    "decline": ("store.lifecycle", "decline"),
    "import": ("store.imports", "import_customers"),
    "purge": ("store.privacy", "purge"),
    "rules set": ("store.rules", "save"),
}


def _interrupt(monkeypatch: pytest.MonkeyPatch, module: str, attr: str, when: str) -> None:
    target = importlib.import_module(module)
    real = getattr(target, attr)

    def then_interrupt(*args: object, **kwargs: object) -> object:
        if when == "after":
            real(*args, **kwargs)  # its transaction has committed
        raise KeyboardInterrupt

    monkeypatch.setattr(target, attr, then_interrupt)


def _said(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = frp_main(argv)
    err = capsys.readouterr().err
    assert code == 130, err
    (line,) = err.splitlines()
    return line


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("name", STORE_WRITES)
def test_an_interrupted_writing_command_says_what_the_store_holds(
    name: str,
    when: str,
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = [*_argv(name, demo_db, tmp_path), "--db", str(demo_db)]
    _interrupt(monkeypatch, *STORE_WRITES[name], when)
    before = digest(demo_db)
    line = _said(capsys, argv)
    if when == "before":
        assert line == "frp: interrupted; nothing was written"
        assert digest(demo_db) == before
    else:
        assert line.startswith("frp: interrupted after the change was saved (audit log: "), line
        assert digest(demo_db) != before


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupted_backup_says_whether_it_was_written(
    when: str,
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "backup"
    # Before: inside the writing of the tables, so a partial folder exists to be removed.
    _interrupt(monkeypatch, "store.backup", "backup" if when == "after" else "_write_tables", when)
    line = _said(capsys, ["backup", str(folder), "--db", str(demo_db)])
    if when == "before":
        assert line == f"frp: interrupted; no backup was written to {folder}"
        assert not folder.exists() and not list(tmp_path.glob(".backup.partial-*"))
    else:
        assert line == f"frp: interrupted after the backup was written to {folder}"
        assert (folder / "manifest.json").is_file()


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_interrupted_restore_says_whether_the_database_was_replaced(
    when: str,
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "backup"
    assert frp_main(["backup", str(folder), "--db", str(demo_db)]) == 0
    capsys.readouterr()
    target = tmp_path / "restored.duckdb"
    _interrupt(monkeypatch, "store.backup", "restore", when)
    line = _said(capsys, ["restore", str(folder), "--db", str(target)])
    if when == "before":
        assert line == f"frp: interrupted; {target} was not replaced"
        assert not target.exists()
    else:
        assert line == f"frp: interrupted after {target} was restored from the backup"
        assert digest(target) == digest(demo_db)


def test_an_interrupted_send_says_what_was_recorded_as_sent(
    demo_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRP_SMTP_HOST", "localhost")
    monkeypatch.setenv("FRP_SMTP_FROM", "FastTrack <fasttrack@example.com>")
    _interrupt(monkeypatch, "store.outbox", "send_pending", "before")
    line = _said(capsys, ["outbox", "send", "--db", str(demo_db)])
    assert line == "frp: interrupted; no message was recorded as sent"
