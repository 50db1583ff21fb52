"""Partner availability and intake through the store (docs/domain.md, "Partner
availability and intake"): the clock's date reaches every run, the month's referrals are
counted per calendar month (UTC), and imports check a pause against max_pause_days.

Every test sets the clock (``store.clock.frozen`` or ``frp --now``); none depends on
the real date. The engine's side is in tests/test_intake.py.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.columns import MONTH_REFERRALS
from engine.rules import DEFAULT_RULES_PATH, load_rules
from engine.schema import InputError
from store import capacity, clock, state
from store.commits import commit, simulate_stored
from store.db import connect
from store.files import read_partners
from store.imports import import_customers, import_partners
from store.lifecycle import decline, drain, held
from tests.test_lifecycle import customers, partners

FRP = str(Path(sys.executable).parent / "frp")
RULES = load_rules()
HOLD = RULES.replace(when_full="hold")


def intake(
    frame: pl.DataFrame,
    paused: dict[str, date] | None = None,
    quota: dict[str, int] | None = None,
) -> pl.DataFrame:
    """Validated partners with some paused until a date and some given a monthly quota."""
    pid = pl.col("partner_id")
    return frame.with_columns(
        pid.replace_strict(paused or {}, default=None, return_dtype=pl.Date).alias("paused_until"),
        pid.replace_strict(quota or {}, default=None, return_dtype=pl.Int64).alias("monthly_quota"),
    )


@pytest.fixture
def con(tmp_path: Path):
    c = connect(tmp_path / "intake.duckdb")
    yield c
    c.close()


def placed(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """Each customer's newest referral: its partner (None for CSS)."""
    rows = con.execute(
        "SELECT tenant_id, partner_id FROM referrals ORDER BY referral_id"
    ).fetchall()
    return dict(rows)


def month_counts(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, int]:
    frame = state.partners(con, day)
    return dict(frame.select("partner_id", MONTH_REFERRALS).iter_rows())


# --- quotas -------------------------------------------------------------------------------


def test_the_quota_is_counted_per_calendar_month(con) -> None:
    import_partners(con, intake(partners(("P1", 10)), quota={"P1": 1}))
    import_customers(con, customers("T1", "T2", "T3"))
    with clock.frozen("2025-01-31T23:30:00"):
        summary = commit(con, HOLD)
    assert (summary.placed, summary.held) == (1, 2)  # the quota of 1, not the 10 seats
    assert placed(con) == {"T1": "P1"}
    # Made on the 31st: it counts for January, not for February.
    assert month_counts(con, date(2025, 1, 31)) == {"P1": 1}
    assert month_counts(con, date(2025, 1, 1)) == {"P1": 1}
    assert month_counts(con, date(2025, 2, 1)) == {"P1": 0}
    with clock.frozen("2025-01-31T23:59:59"):
        assert drain(con, HOLD).placed == 0  # still January: the quota is used
    with clock.frozen("2025-02-01T00:00:00"):  # a new month frees the quota
        assert drain(con, HOLD).placed == 1
    assert placed(con) == {"T1": "P1", "T2": "P1"}
    assert held(con)["tenant_id"].to_list() == ["T3"]
    # The seats are still taken: only the month's count starts again.
    assert state.partners(con, date(2025, 2, 1))["active_referrals"].to_list() == [2]


def test_a_declined_or_completed_referral_still_counts_for_its_month(con) -> None:
    import_partners(con, intake(partners(("P1", 5), ("P2", 5)), quota={"P1": 1}))
    import_customers(con, customers("T1"))
    with clock.frozen("2025-03-03"):
        commit(con, RULES)
        assert placed(con) == {"T1": "P1"}
        decline(con, "T1", "at_capacity", RULES)
        assert month_counts(con, clock.today()) == {"P1": 1, "P2": 1}
        import_customers(con, customers("T2"))
        commit(con, RULES)  # P1 had its one referral this month
    assert placed(con)["T2"] == "P2"


# --- pauses -------------------------------------------------------------------------------


def test_a_pause_ends_on_its_date_in_every_run(con) -> None:
    import_partners(con, intake(partners(("P1", 5)), paused={"P1": date(2025, 3, 10)}))
    import_customers(con, customers("T1"))
    with clock.frozen("2025-03-09T23:59:59"):
        sim, _ = simulate_stored(con, RULES)
        assert sim.assignments["reason"].to_list() == ["no_partner_match"]
        assert "(1 paused: P1)" in sim.assignments["trace"][0]
    with clock.frozen("2025-03-10T00:00:00"):
        sim, _ = simulate_stored(con, RULES)
        assert sim.assignments["partner_id"].to_list() == ["P1"]
        commit(con, RULES)
    assert placed(con) == {"T1": "P1"}


def test_a_re_assignment_after_a_decline_skips_a_paused_partner(con) -> None:
    import_partners(con, partners(("P1", 5), ("P2", 5), ("P3", 5)))
    import_customers(con, customers("T1"))
    with clock.frozen("2025-04-01"):
        commit(con, RULES)
        assert placed(con) == {"T1": "P1"}
        # P2 (next in round robin) pauses; P1 declines: the customer goes to P3.
        import_partners(con, intake(partners(("P2", 5)), paused={"P2": date(2025, 4, 15)}))
        decline(con, "T1", "at_capacity", RULES)
    assert placed(con) == {"T1": "P3"}


# --- imports ------------------------------------------------------------------------------

CSV_HEADER = (
    "partner_id,name,countries,languages,workloads,capacity,active_referrals,referral_ready,"
    "psm_name,psm_email,contact_email,paused_until,monthly_quota\n"
)


def partners_csv(path: Path, *rows: tuple[str, str, str]) -> Path:
    """A partners CSV: (partner_id, paused_until, monthly_quota) per row."""
    lines = [
        f"{pid},Partner {pid},SE,sv,exchange,5,0,true,Ann,ann@psm.example,{pid}@p.example,{p},{q}"
        for pid, p, q in rows
    ]
    path.write_text(CSV_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_partner_file_is_checked_on_the_clocks_date(tmp_path: Path) -> None:
    path = partners_csv(tmp_path / "p.csv", ("P1", "2025-06-30", "4"), ("P2", "", ""))
    with clock.frozen("2025-05-31"):
        frame = read_partners(path)
        assert frame["paused_until"].to_list() == [date(2025, 6, 30), None]
        assert frame["monthly_quota"].to_list() == [4, None]
    with clock.frozen("2025-05-30"), pytest.raises(InputError) as caught:
        read_partners(path)
    problem = caught.value.problems[0]
    assert (problem.row, problem.column, problem.value) == (2, "paused_until", "2025-06-30")
    with clock.frozen("2025-05-30"):
        assert read_partners(path, max_pause_days=31).height == 2


def test_import_stores_the_new_columns_and_a_new_file_replaces_them(con) -> None:
    import_partners(
        con, intake(partners(("P1", 5)), paused={"P1": date(2025, 6, 1)}, quota={"P1": 3})
    )
    stored = con.execute("SELECT paused_until, monthly_quota FROM partners").fetchall()
    assert stored == [(date(2025, 6, 1), 3)]
    import_partners(con, partners(("P1", 5)))  # a file without them: no pause, no quota
    assert con.execute("SELECT paused_until, monthly_quota FROM partners").fetchall() == [
        (None, None)
    ]


def frp(*args: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([FRP, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_cli_import_with_pauses_and_quotas_and_a_bad_row(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    good = partners_csv(tmp_path / "good.csv", ("P1", "2025-06-20", "2"), ("P2", "", ""))
    proc = frp("--now", "2025-06-01", "import", "--db", db, "--partners", good)
    assert proc.returncode == 0, proc.stderr
    assert "partners: 2 added" in proc.stdout
    bad = partners_csv(tmp_path / "bad.csv", ("P1", "2025-06-20", "2"), ("P3", "2025-07-02", "x"))
    proc = frp("--now", "2025-06-01", "import", "--db", db, "--partners", bad)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "bad.csv" in line and "line 3" in line and "column paused_until" in line
    assert "'2025-07-02'" in line and "no later than 2025-07-01" in line
    assert "(and 1 more problem)" in line  # the quota "x" of the same row
    # A rules file may allow longer pauses.
    rules = tmp_path / "rules.toml"
    shipped = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    rules.write_text(shipped.replace("max_pause_days = 30", "max_pause_days = 60"), "utf-8")
    fixed = partners_csv(tmp_path / "fixed.csv", ("P3", "2025-07-02", "1"))
    proc = frp("--now", "2025-06-01", "import", "--db", db, "--partners", fixed, "--rules", rules)
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT partner_id, paused_until, monthly_quota FROM partners ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        ("P1", date(2025, 6, 20), 2),
        ("P2", None, None),
        ("P3", date(2025, 7, 2), 1),
    ]


def test_cli_simulate_on_files_pauses_by_the_clock(tmp_path: Path) -> None:
    good = partners_csv(tmp_path / "p.csv", ("P1", "2025-06-20", ""), ("P2", "", "0"))
    cust = tmp_path / "c.csv"
    cust.write_text(
        "tenant_id,name,country,language,seats,workloads,gateway,contact_email\n"
        "T1,One,SE,sv,500,exchange,false,it@one.example\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    args = ("simulate", "--partners", good, "--customers", cust, "--out", out)
    proc = frp("--now", "2025-06-19", *args)
    assert proc.returncode == 0, proc.stderr
    result = pl.read_csv(out)
    assert result["reason"].to_list() == ["capacity_exhausted"]  # P1 paused, P2 at quota 0
    assert frp("--now", "2025-06-20", *args).returncode == 0
    assert pl.read_csv(out)["partner_id"].to_list() == ["P1"]


# --- the Partner capacity page's reads --------------------------------------------------------


def test_capacity_reads_show_pauses_and_the_quota_used(con) -> None:
    import_partners(
        con,
        intake(
            partners(("P1", 10), ("P2", 4), ("P3", 6)),
            paused={"P1": date(2025, 5, 20), "P3": date(2025, 5, 1)},
            quota={"P2": 3},
        ),
    )
    import_customers(con, customers("T1", "T2"))
    with clock.frozen("2025-05-10"):
        commit(con, RULES)  # P1 paused: T1 to P2, T2 to P3 (its pause ended)
        assert placed(con) == {"T1": "P2", "T2": "P3"}
        frame = capacity.partner_capacity(con).sort("partner_id")
        head = capacity.capacity_headline(con)
        paused = capacity.paused_partners(con)
        only_paused = capacity.partner_capacity(con, capacity.PartnerFilter(paused=True))
        detail = capacity.partner_detail(con, "P2")
    rows = {r["partner_id"]: r for r in frame.iter_rows(named=True)}
    assert [rows[p]["paused"] for p in ("P1", "P2", "P3")] == [True, False, False]
    assert rows["P1"]["paused_until"] == date(2025, 5, 20)
    assert (rows["P2"]["quota_used"], rows["P2"]["this_month"]) == ("1 / 3", 1)
    assert rows["P3"]["quota_used"] is None
    # P2: 3 seats left, but only 2 more this month. P1's 10 are not free while it is away.
    assert [rows[p]["free"] for p in ("P1", "P2", "P3")] == [10, 2, 5]
    assert head["free_seats"] == 7
    assert (rows["P1"]["rr_position"], detail is not None and detail["ready_partners"]) == (
        None,
        2,
    )
    assert paused.to_dicts() == [
        {"partner_id": "P1", "name": "Partner P1", "paused_until": date(2025, 5, 20)}
    ]
    assert only_paused["partner_id"].to_list() == ["P1"]
    with clock.frozen("2025-05-20"):  # back by itself
        assert capacity.paused_partners(con).height == 0
        assert capacity.capacity_headline(con)["free_seats"] == 17
