"""The team's rules in the store, versioned (#16, part 1): store/rules.py and `frp rules`.

Every command reads the store's current rules unless given ``--rules FILE``; every run
records the version its rules are (NULL for a file that is no saved version).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from cli.main import main as frp_main
from engine.rules import DEFAULT_RULES_PATH, RulesError, load_rules
from store import clock
from store import rules as team_rules
from store.db import connect
from store.errors import StoreError
from store.fairness import committed_fairness, outcomes_by_size
from tests.app_helpers import open_page, rows, value

SHIPPED = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
#: The shipped rules with a higher seat threshold and a longer acceptance window.
STRICTER = SHIPPED.replace("min_seats = 150", "min_seats = 400").replace(
    "accept_within_days = 7", "accept_within_days = 10"
)


def ok(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code = frp_main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def refused(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """Exit 2 and one line (``frp: ...``, or ``frp rules set: ...`` for a usage error)."""
    code = frp_main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("frp"), err
    assert "internal error" not in err
    return err.strip()


def part_of_backlog(db: Path, tmp_path: Path, n: int = 20) -> Path:
    """The first ``n`` customers of the FTCQ as a cohort file: the rest wait for a later run."""
    path = tmp_path / "part.csv"
    con = connect(db)
    try:
        con.execute(
            "COPY (SELECT tenant_id, name, country, language, seats, "
            "array_to_string(workloads, ';') AS workloads, gateway, contact_email, "
            f"referral_consent FROM customers WHERE in_ftcq ORDER BY ftcq_seq LIMIT {n}) "
            f"TO '{path}' (HEADER)"
        )
    finally:
        con.close()
    return path


def snapshot(db: Path) -> list[tuple]:
    return rows(db, "SELECT * FROM rules_versions ORDER BY version") + rows(
        db, "SELECT count(*) FROM audit_log"
    )


# --- store/rules.py -----------------------------------------------------------------------


def test_a_saved_version_is_current_with_who_when_and_why(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        assert team_rules.current(con).version == 1
        assert team_rules.current(con).text == SHIPPED
        with clock.frozen("2026-05-04T10:30:00"):
            n = team_rules.save(con, STRICTER, actor="kim@example.com", note="larger customers")
        now = team_rules.current(con)
        assert (n, now.version, now.actor, now.at, now.note) == (
            2,
            2,
            "kim@example.com",
            datetime(2026, 5, 4, 10, 30),
            "larger customers",
        )
        assert now.rules.min_seats == 400 and now.rules.accept_within_days == 10
        assert [v.version for v in team_rules.history(con)] == [2, 1]
        assert team_rules.get(con, 1).text == SHIPPED
        audit = con.execute(
            "SELECT actor, action, subject FROM audit_log WHERE action = 'rules_save'"
        ).fetchall()
        assert audit == [("kim@example.com", "rules_save", "rules version 2")]
    finally:
        con.close()


def test_invalid_rules_an_empty_note_and_the_same_text_write_nothing(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        before = snapshot(demo_db)
        with pytest.raises(RulesError, match="min_seat: unknown key"):
            team_rules.save(con, "min_seat = 1\n" + SHIPPED, actor="kim", note="typo")
        with pytest.raises(StoreError, match="a note is required"):
            team_rules.save(con, STRICTER, actor="kim", note="  ")
        assert team_rules.save(con, SHIPPED, actor="kim", note="again") == 1  # a no-op
        assert snapshot(demo_db) == before
    finally:
        con.close()


def test_a_restore_is_a_new_version_with_the_old_text_and_diff_shows_the_change(
    demo_db: Path,
) -> None:
    con = connect(demo_db)
    try:
        team_rules.save(con, STRICTER, actor="kim", note="larger customers")
        assert team_rules.restore(con, 1, actor="bo") == 3
        assert team_rules.current(con).text == SHIPPED
        assert team_rules.current(con).note == "restored version 1"
        diff = team_rules.diff(con, 1, 2)
        assert diff.startswith("--- version 1\n+++ version 2\n")
        assert "-min_seats = 150\n+min_seats = 400\n" in diff
        assert "+accept_within_days = 10\n" in diff
        assert team_rules.diff(con, 1, 3) == ""
        with pytest.raises(StoreError, match="no rules version 9; the versions are 1 to 3"):
            team_rules.get(con, 9)
    finally:
        con.close()


# --- runs record their version ------------------------------------------------------------


def test_commands_use_the_stores_rules_and_runs_record_their_version(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(STRICTER, encoding="utf-8")
    ok(capsys, "rules", "set", stricter, "--note", "larger customers only")
    ok(capsys, "commit")
    # The store's rules (version 2: min_seats 400), not the shipped file's.
    assert rows(demo_db, "SELECT run_id, rules_version FROM runs") == [(1, 2)]
    assert value(demo_db, "SELECT rules_toml FROM runs").count("min_seats = 400") == 1
    small = value(
        demo_db,
        "SELECT count(*) FROM referrals r JOIN customers c USING (tenant_id) "
        "WHERE r.run_id = 1 AND r.reason = 'assigned' AND c.seats < 400",
    )
    assert small == 0
    assert "accept_within_days = 10" in value(demo_db, "SELECT rules_toml FROM runs")


def test_a_rules_file_that_is_a_saved_version_records_it_another_records_none(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    other.write_text(SHIPPED.replace("min_seats = 150", "min_seats = 300"), encoding="utf-8")
    shipped_again = tmp_path / "same.toml"
    shipped_again.write_text("# the same rules, another comment\n" + SHIPPED, encoding="utf-8")
    ok(capsys, "commit", "--rules", other, "--cohort", part_of_backlog(demo_db, tmp_path))
    ok(capsys, "commit", "--rules", shipped_again)
    assert rows(demo_db, "SELECT run_id, rules_version FROM runs ORDER BY run_id") == [
        (1, None),
        (2, 1),
    ]


# --- `frp rules` --------------------------------------------------------------------------


def test_frp_rules_show_set_history_and_diff(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ok(capsys, "rules", "show") == SHIPPED
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(STRICTER, encoding="utf-8")
    out = ok(
        capsys, "rules", "set", stricter, "--note", "larger customers", "--actor", "kim",
        "--now", "2026-05-04T10:30",
    )  # fmt: skip
    assert out.strip() == "saved the team's rules as version 2 (was version 1)"
    assert ok(capsys, "rules", "show") == STRICTER
    assert ok(capsys, "rules", "show", "--version", "1") == SHIPPED
    assert "unchanged" in ok(capsys, "rules", "set", stricter, "--note", "again")
    history = ok(capsys, "rules", "history").splitlines()
    assert history[0].split() == ["version", "saved_at", "actor", "note"]
    assert history[1].startswith("2  2026-05-04 10:30  kim")
    assert history[1].endswith("larger customers")
    assert history[2].startswith("1  ") and "setup" in history[2]
    diff = ok(capsys, "rules", "diff", "1", "2")
    assert "-min_seats = 150\n+min_seats = 400\n" in diff
    assert ok(capsys, "rules", "diff", "2", "2").strip() == "versions 2 and 2 are the same"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["show", "--version", "7"], "no rules version 7; the versions are 1 to 1"),
        (["diff", "1", "5"], "no rules version 5"),
        (["diff", "1", "x"], "invalid int value: 'x'"),
        (["set", "BAD", "--note", "typo"], "min_seat: unknown key"),
        (["set", "MISSING", "--note", "x"], "no such rules file"),
        (["set", "GOOD", "--note", " "], "a note is required"),
        (["set", "GOOD"], "the following arguments are required: --note"),
    ],
)
def test_frp_rules_refusals_say_why_in_one_line_and_write_nothing(
    args: list[str],
    says: str,
    demo_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "bad.toml").write_text("min_seat = 1\n" + SHIPPED, encoding="utf-8")
    (tmp_path / "good.toml").write_text(STRICTER, encoding="utf-8")
    files = {"BAD": "bad.toml", "GOOD": "good.toml", "MISSING": "missing.toml"}
    args = [str(tmp_path / files[a]) if a in files else a for a in args]
    before = snapshot(demo_db)
    line = refused(capsys, "rules", *args)
    assert says in line, line
    assert snapshot(demo_db) == before


def test_frp_rules_on_a_missing_store_says_how_to_build_one(
    empty_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "rules", "show")
    assert "no such database" in line
    assert not empty_db.exists()


# --- the Referrals and Fairness pages filter by version -------------------------------------


@pytest.fixture
def two_versions(demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Run 1 with version 1 (part of the backlog), run 2 with version 2 (the rest)."""
    ok(capsys, "commit", "--cohort", part_of_backlog(demo_db, tmp_path))
    (tmp_path / "v2.toml").write_text(STRICTER, encoding="utf-8")
    ok(capsys, "rules", "set", tmp_path / "v2.toml", "--note", "larger customers")
    ok(capsys, "commit")
    assert rows(demo_db, "SELECT run_id, rules_version FROM runs ORDER BY 1") == [(1, 1), (2, 2)]
    return demo_db


def of_run(db: Path, run: int) -> int:
    return value(db, "SELECT count(*) FROM referrals WHERE run_id = ?", [run])


@pytest.mark.usefixtures("fresh_caches")
def test_the_referrals_page_filters_by_rules_version(two_versions: Path) -> None:
    at = open_page("pages/referrals.py")
    assert at.selectbox(key="ref_rules_version").options == [
        "Any version",
        "version 2",
        "version 1",
    ]
    for version, run in ((1, 1), (2, 2)):
        at.selectbox(key="ref_rules_version").set_value(version).run()
        assert not at.exception
        assert at.metric[0].value == f"{of_run(two_versions, run):,}"
        shown = set(at.dataframe[0].value["run_id"])
        assert shown == {run}


@pytest.mark.usefixtures("fresh_caches")
def test_the_fairness_page_and_its_reads_filter_by_rules_version(two_versions: Path) -> None:
    con = connect(two_versions)
    try:
        for version, run in ((1, 1), (2, 2)):
            fair, _ = committed_fairness(con, None, None, load_rules(), version)
            assert fair.customers == value(
                two_versions,
                "SELECT count(DISTINCT tenant_id) FROM referrals WHERE run_id = ?",
                [run],
            )
            sizes = outcomes_by_size(con, None, None, version)
            assert sizes["customers"].sum() == of_run(two_versions, run)
    finally:
        con.close()
    at = open_page("pages/fairness.py")
    assert at.selectbox(key="fair_rules_version").options == [
        "Any version",
        "version 2",
        "version 1",
    ]
    at.selectbox(key="fair_rules_version").set_value(2).run()
    assert not at.exception
