"""The one clock: ISO dates and date-times in UTC, set for a process, by FRP_NOW, or real."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from store import clock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06", datetime(2026, 12, 6)),
        ("2026-12-06T09:30", datetime(2026, 12, 6, 9, 30)),
        ("2026-12-06 09:30:15", datetime(2026, 12, 6, 9, 30, 15)),
        ("2026-12-06T09:30:00Z", datetime(2026, 12, 6, 9, 30)),
        ("2026-12-06T10:30:00+01:00", datetime(2026, 12, 6, 9, 30)),
        ("2026-12-06T23:30:00-02:00", datetime(2026, 12, 7, 1, 30)),
        ("  2026-01-31  ", datetime(2026, 1, 31)),
    ],
)
def test_iso_dates_and_times_are_read_as_naive_utc(text: str, expected: datetime) -> None:
    assert clock.parse(text) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "06/12/2026", "2026-13-01", "2026-12-06T25:00"])
def test_anything_else_is_refused_naming_the_source_and_the_form(text: str) -> None:
    with pytest.raises(clock.ClockError, match=r"--now: .* expected ISO 8601 in UTC"):
        clock.parse(text, "--now")


def test_frp_now_sets_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "2027-03-01T12:00:00Z")
    assert clock.now() == datetime(2027, 3, 1, 12)
    assert clock.today() == date(2027, 3, 1)


def test_a_time_set_for_the_process_wins_over_frp_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "2027-03-01")
    with clock.frozen("2030-01-02") as at:
        assert at == clock.now() == datetime(2030, 1, 2)
        with clock.frozen(datetime(2031, 5, 6, 7)):
            assert clock.now() == datetime(2031, 5, 6, 7)
        assert clock.now() == datetime(2030, 1, 2)
    assert clock.now() == datetime(2027, 3, 1)


def test_a_bad_frp_now_is_an_error_not_the_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "next week")
    with pytest.raises(clock.ClockError, match="FRP_NOW: 'next week'"):
        clock.now()


def test_without_a_setting_the_clock_is_the_real_utc_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.ENV, raising=False)
    before = datetime.now(UTC).replace(tzinfo=None)
    got = clock.now()
    assert got.tzinfo is None
    assert abs(got - before) < timedelta(minutes=1)


ROOT = Path(__file__).resolve().parent.parent
#: Ways to read the time without the clock: the system's, and DuckDB's.
OTHER_CLOCKS = re.compile(
    r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|\btime\.time\(\)"
    r"|\bnow\(\)|current_timestamp|current_date|\btoday\(\)",
    re.IGNORECASE,
)


def _product_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for package in ("engine", "store", "cli", "ui", "pages"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [p for p in files if p != ROOT / "store" / "clock.py"]


def test_nothing_but_the_clock_reads_the_time() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _product_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OTHER_CLOCKS.search(line.replace("clock.now()", "").replace("clock.today()", ""))
    ]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "x = datetime.now(UTC)",
        "d = date.today()",
        "SET created_at = now()::TIMESTAMP",
        "WHERE created_at < current_timestamp",
        "t = time.time()",
    ],
)
def test_the_scan_sees_each_other_clock(line: str) -> None:
    assert OTHER_CLOCKS.search(line)


def test_a_commit_stamps_everything_with_the_clocks_time(demo_db: Path) -> None:
    from cli.main import main
    from store.db import connect

    assert main(["commit", "--db", str(demo_db), "--now", "2027-02-03T04:05:06Z"]) == 0
    con = connect(demo_db)
    try:
        (run_id,) = con.execute("SELECT max(run_id) FROM runs").fetchall()[0]
        stamps = con.execute(
            """
            SELECT 'run', created_at FROM runs WHERE run_id = $run
            UNION ALL SELECT DISTINCT 'referral', created_at FROM referrals WHERE run_id = $run
            UNION ALL SELECT DISTINCT 'task', t.created_at FROM ftop_tasks t
                JOIN referrals r USING (referral_id) WHERE r.run_id = $run
            UNION ALL SELECT DISTINCT 'message', o.created_at FROM outbox o
                JOIN referrals r USING (referral_id) WHERE r.run_id = $run
            UNION ALL SELECT 'audit', max(logged_at) FROM audit_log
            """,
            {"run": run_id},
        ).fetchall()
    finally:
        con.close()
    assert {kind for kind, _ in stamps} == {"run", "referral", "task", "message", "audit"}
    assert {at for _, at in stamps} == {datetime(2027, 2, 3, 4, 5, 6)}
    assert clock.now() != datetime(2027, 2, 3, 4, 5, 6)  # --now held for that command only
