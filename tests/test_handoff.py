"""The CSS hand-off (docs/domain.md, "Referral life cycle"): a queue's open CSS referrals
wait as `queued` and move `queued` -> `handed_off` once, with an audit entry each; their
customers stay out of later runs; `frp css export` writes what the delivery team needs,
formulas neutralised, and is audited; `frp css handoff` hands off a queue, up to a
referral, or chosen ones."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cli.main import main as frp_main
from engine.rules import load_rules
from engine.schema import validate_customers
from store import handoff, state
from store.commits import commit
from store.db import connect, open_db
from store.errors import StoreError
from store.files import csv_text
from store.imports import import_customers, import_partners
from tests.test_lifecycle import partners

RULES = load_rules()
QUEUE = "CSS EMEA"  # Sweden's region


def customers(*rows: tuple[str, int]) -> pl.DataFrame:
    """Swedish customers wanting Exchange: (tenant_id, seats); under 150 seats go to CSS."""
    n = len(rows)
    return validate_customers(
        pl.DataFrame(
            {
                "tenant_id": [t for t, _ in rows],
                "name": [f"Customer {t}" for t, _ in rows],
                "country": ["SE"] * n,
                "language": ["sv"] * n,
                "seats": [str(s) for _, s in rows],
                "workloads": ["exchange"] * n,
                "gateway": ["false"] * n,
                "contact_email": [f"{t.lower()}@example.com" for t, _ in rows],
            }
        )
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """One partner, one customer it takes (T1) and three small ones sent to CSS EMEA."""
    p = tmp_path / "handoff.duckdb"
    con = connect(p)
    try:
        import_partners(con, partners(("P1", 5)))
        import_customers(con, customers(("T1", 500), ("S1", 10), ("S2", 20), ("S3", 30)))
        commit(con, RULES, actor="test")
    finally:
        con.close()
    return p


@pytest.fixture
def con(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(path)
    yield c
    c.close()


def ids(con: duckdb.DuckDBPyConnection, *tenants: str) -> list[int]:
    rows = con.execute(
        "SELECT referral_id FROM referrals WHERE list_contains(?, tenant_id) ORDER BY referral_id",
        [list(tenants)],
    ).fetchall()
    return [r[0] for r in rows]


def statuses(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT tenant_id, status FROM referrals").fetchall())


def test_a_css_referral_waits_as_queued_not_active(con) -> None:
    """`active` is a partner referral waiting for the partner's answer; a CSS referral
    waits for the hand-off under a status of its own."""
    assert statuses(con) == {"T1": "active", "S1": "queued", "S2": "queued", "S3": "queued"}
    assert handoff.queues(con)["open"].to_list() == [3]


def test_a_queue_is_handed_off_once_with_an_audit_entry_per_referral(con) -> None:
    done = handoff.hand_off(con, queue=QUEUE, actor="ann")
    assert done.referral_ids == tuple(ids(con, "S1", "S2", "S3"))
    assert done.queues == (QUEUE,)
    assert done.describe().startswith(f"3 CSS referrals of {QUEUE} handed off")
    assert statuses(con) == {
        "T1": "active",
        "S1": "handed_off",
        "S2": "handed_off",
        "S3": "handed_off",
    }
    audit = con.execute(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'css_handoff' ORDER BY id"
    ).fetchall()
    assert [(a, s) for a, s, _ in audit] == [("ann", "S1"), ("ann", "S2"), ("ann", "S3")]
    details = json.loads(audit[0][2])
    assert details == {
        "referral_id": done.referral_ids[0],
        "queue": QUEUE,
        "before": {"status": "queued"},
        "after": {"status": "handed_off"},
    }
    # Once: the queue has nothing left, and naming a handed-off referral is refused.
    again = handoff.hand_off(con, queue=QUEUE, actor="ann")
    assert again.referral_ids == () and again.describe().startswith("nothing handed off")
    with pytest.raises(StoreError, match="already handed_off"):
        handoff.hand_off(con, referral_ids=[done.referral_ids[0]])
    assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'css_handoff'").fetchall()[
        0
    ] == (3,)


def test_up_to_stops_at_the_last_referral_listed(con) -> None:
    s1, s2, s3 = ids(con, "S1", "S2", "S3")
    listed = handoff.open_referrals(con, QUEUE, up_to=s2)
    assert listed["referral_id"].to_list() == [s1, s2]
    done = handoff.hand_off(con, queue=QUEUE, up_to=s2)
    assert done.referral_ids == (s1, s2)
    assert statuses(con)["S3"] == "queued"
    assert handoff.queues(con).row(0, named=True) == {
        "queue": QUEUE,
        "open": 1,
        "handed_off": 2,
        "last_open": s3,
    }


def test_naming_a_referral_that_is_not_an_open_css_one_refuses_the_whole_hand_off(con) -> None:
    (s1,), (t1,) = ids(con, "S1"), ids(con, "T1")
    before = statuses(con)
    with pytest.raises(StoreError, match=f"referral {t1} went to a partner"):
        handoff.hand_off(con, referral_ids=[s1, t1])
    with pytest.raises(StoreError, match="referral 999 does not exist"):
        handoff.hand_off(con, referral_ids=[s1, 999])
    with pytest.raises(StoreError, match="no CSS referral was ever sent to queue 'CSS Mars'"):
        handoff.hand_off(con, queue="CSS Mars")
    with pytest.raises(StoreError, match="either a queue or a list"):
        handoff.hand_off(con, queue=QUEUE, referral_ids=[s1])
    assert statuses(con) == before
    assert handoff.hand_off(con, referral_ids=[s1]).referral_ids == (s1,)


def test_a_handed_off_customer_is_never_re_assigned(con) -> None:
    seats_held = con.execute("SELECT open_referrals FROM partner_state").fetchall()
    handoff.hand_off(con, queue=QUEUE)
    # CSS referrals never held a seat: the partner's load is the same after the hand-off.
    assert con.execute("SELECT open_referrals FROM partner_state").fetchall() == seats_held
    # S1 grows past the seat threshold: a re-import leaves it out of the FTCQ ...
    import_customers(con, customers(("S1", 900)))
    in_ftcq = con.execute("SELECT in_ftcq FROM customers WHERE tenant_id = 'S1'").fetchall()
    assert in_ftcq == [(False,)]
    assert state.open_referral_tenants(con, ["S1", "S2"]) == {"S1", "S2"}
    # ... and a commit naming it skips it: no second referral, no partner.
    summary = commit(con, RULES, cohort=customers(("S1", 900)), actor="test")
    assert summary.skipped == 1 and summary.run_id is None
    assert con.execute("SELECT count(*) FROM referrals WHERE tenant_id = 'S1'").fetchall() == [(1,)]


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = frp_main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_export_has_the_delivery_columns_and_neutralises_formulas(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_db(path) as con:
        con.execute(
            "UPDATE customers SET name = '=HYPERLINK(\"http://evil.example\")', "
            "contact_email = '+1@example.com' WHERE tenant_id = 'S2'"
        )
        (s3,) = ids(con, "S3")
    out = tmp_path / "emea.csv"
    code, stdout, err = run(capsys, "css", "export", QUEUE, "--out", out, "--db", path)
    assert code == 0, err
    assert f"3 open CSS referrals of {QUEUE} written to {out}" in stdout
    assert f"frp css handoff '{QUEUE}' --up-to {s3}" in stdout
    records = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(records[0]) == handoff.EXPORT_COLUMNS
    assert [r["tenant_id"] for r in records] == ["S1", "S2", "S3"]
    s2 = records[1]
    assert s2["customer_name"] == '\'=HYPERLINK("http://evil.example")'
    assert s2["contact_email"] == "'+1@example.com"
    assert (s2["queue"], s2["reason"], s2["seats"]) == (QUEUE, "below_seat_threshold", "20")
    assert (s2["eligible_workloads"], s2["gateway"], s2["country"]) == ("exchange", "false", "SE")

    # To stdout: the same CSV, the summary on stderr; both exports are audited.
    code, stdout, err = run(capsys, "css", "export", QUEUE, "--db", path)
    assert code == 0, err
    assert stdout == out.read_text()
    assert "written to stdout" in err
    con = connect(path, read_only=True)
    try:
        audit = con.execute(
            "SELECT actor, subject, details FROM audit_log "
            "WHERE action = 'export_personal_data' ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    assert [s for _, s, _ in audit] == [
        f"css export of {QUEUE} to {out}",
        f"css export of {QUEUE} to stdout",
    ]
    assert all(a.startswith("cli:") for a, _, _ in audit)
    assert json.loads(audit[0][2]) == {"queue": QUEUE, "referrals": 3, "up_to": s3}


def test_csv_text_is_what_write_table_writes(con, tmp_path: Path) -> None:
    frame = handoff.open_referrals(con, QUEUE)
    out = tmp_path / "same.csv"
    from store.files import write_table

    write_table(frame, out)
    assert csv_text(frame) == out.read_text()


def test_cli_handoff_of_a_queue_up_to_an_id_and_of_chosen_referrals(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    con = connect(path, read_only=True)
    s1, s2, s3 = ids(con, "S1", "S2", "S3")
    (t1,) = ids(con, "T1")
    con.close()
    code, out, err = run(capsys, "css", "handoff", QUEUE, "--up-to", s1, "--db", path)
    assert code == 0, err
    assert out.strip() == f"1 CSS referral of {QUEUE} handed off (referral {s1})"
    code, out, err = run(
        capsys, "css", "handoff", "--referral", s2, "--referral", s3, "--actor", "bo", "--db", path
    )
    assert code == 0, err
    assert f"2 CSS referrals of {QUEUE} handed off (referrals {s2} to {s3})" in out
    for args, words in (
        (("--referral", s1), f"frp: referral {s1} is already handed_off"),
        (("--referral", t1), f"frp: referral {t1} went to a partner"),
        ((QUEUE, "--referral", s1), "frp css handoff: give either a QUEUE or --referral ID"),
        (("--up-to", s1, "--referral", s1), "frp css handoff: --up-to applies to a QUEUE"),
        ((), "frp css handoff: give either a QUEUE or --referral ID"),
    ):
        code, out, err = run(capsys, "css", "handoff", *args, "--db", path)
        assert code == 2 and out == ""
        (line,) = err.splitlines()
        assert line.startswith(words), line
    code, _, err = run(capsys, "css", "export", "CSS Mars", "--db", path)
    assert code == 2 and "queues: CSS EMEA" in err
