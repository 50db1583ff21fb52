"""Unwritable places (#15): a database whose folder is read-only and a backup into a
folder that cannot be written end with exit code 2 and one line naming the path and the
cause, and nothing is written.

The tests run as root, where file modes deny nothing, so a read-only folder is made
the honest way: a read-only bind mount of a temporary folder, with the database file
itself bind-mounted writable on top (DuckDB then opens the file for writing and fails
only when it creates the ``.wal`` beside it, as it does in a read-only folder). Where
bind mounts are not allowed the test fails (it cannot run, and a test that cannot run
never passes here): the suite runs as root, as CI does. A file standing where a folder
should be needs no privilege.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main as frp_main
from tests.db_helpers import digest

PARTNERS = Path(__file__).parent / "corpus" / "partners" / "ok-basic.csv"


def refused(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code = frp_main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frp: "), err
    assert "internal error" not in err and "collided" not in err
    return lines[0]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder (a bind mount), empty."""
    source, folder = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    folder.mkdir()
    if not shutil.which("mount") or not _mount("--bind", str(source), str(folder)):
        pytest.fail("this test needs `mount --bind` (run the suite as root, as CI does)")
    try:
        if not _mount("-o", "remount,bind,ro", str(folder)):
            pytest.fail("this test needs a read-only bind remount (root, as CI has)")
        yield folder
    finally:
        subprocess.run(["umount", "-R", str(folder)], check=True)


@pytest.fixture
def db_in_read_only_folder(read_only_folder: Path, demo_db: Path) -> Iterator[Path]:
    """The demo database, writable, in a read-only folder."""
    db = read_only_folder / "frp.duckdb"
    (read_only_folder.parent / "source" / db.name).touch()  # the mount point, seen in ro/
    subprocess.run(["mount", "--bind", str(demo_db), str(db)], check=True)
    yield db


# A customer the demo has: the purge gets as far as writing (opening the store writes
# nothing when it is already of this version).
@pytest.mark.parametrize("command", [["commit"], ["purge", "T000001"], ["expire"]])
def test_a_database_in_a_read_only_folder(
    db_in_read_only_folder: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    db = db_in_read_only_folder
    before = digest(db)
    line = refused(capsys, *command, "--db", db)
    assert str(db) in line and "read-only" in line
    assert digest(db) == before


def test_backup_into_a_read_only_folder(
    read_only_folder: Path, demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = read_only_folder / "backup"
    line = refused(capsys, "backup", target, "--db", demo_db)
    assert str(target) in line and "read-only" in line
    assert list(read_only_folder.iterdir()) == []


def test_backup_where_a_file_stands_for_a_folder(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine", encoding="utf-8")
    target = blocker / "backup"
    line = refused(capsys, "backup", target, "--db", demo_db)
    assert str(target) in line and "not a directory" in line
    assert blocker.read_text(encoding="utf-8") == "mine"


def test_restore_into_a_read_only_folder(
    read_only_folder: Path, demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backup"
    assert frp_main(["backup", str(folder), "--db", str(demo_db)]) == 0
    capsys.readouterr()
    target = read_only_folder / "frp.duckdb"
    line = refused(capsys, "restore", folder, "--db", target)
    assert str(target) in line and "read-only" in line
    assert list(read_only_folder.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KiB file system (tmpfs): smaller than the demo's backup (about 950 KiB)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if not shutil.which("mount") or not _mount(
        "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)
    ):
        pytest.fail("this test needs to mount a tmpfs (run the suite as root, as CI does)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _no_backup_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "filler")


def test_a_disk_that_fills_while_the_tables_are_written(
    small_disk: Path, demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = small_disk / "backup"
    line = refused(capsys, "backup", target, "--db", demo_db)
    assert str(target) in line and "no space left on device" in line, line
    assert _no_backup_left(small_disk) == []  # the partial folder is removed


def test_a_disk_that_fills_before_the_manifest(
    small_disk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import store.backup

    demo = tmp_path / "tiny.duckdb"  # a store small enough for the tables to fit
    assert frp_main(["import", "--partners", str(PARTNERS), "--db", str(demo)]) == 0
    real = store.backup._write_tables

    def then_fill(*args: object) -> object:
        out = real(*args)
        _fill(small_disk)  # the disk is full when the manifest is written
        return out

    monkeypatch.setattr(store.backup, "_write_tables", then_fill)
    target = small_disk / "backup"
    line = refused(capsys, "backup", target, "--db", demo)
    assert str(target) in line and "no space left on device" in line, line
    assert _no_backup_left(small_disk) == []
