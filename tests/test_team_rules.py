"""The team's rules in the store, versioned (#16, part 1): store/rules.py and `frp rules`.

Every command reads the store's current rules unless given ``--rules FILE``; every run
records the version its rules are (NULL for a file that is no saved version).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def demo_rules(db: Path) -> tuple[int, int]:
    """(the team's rules version, the last run) as the demo left them: the demo saves
    versions of its own and makes runs, so a test counts from these."""
    return (
        value(db, "SELECT max(version) FROM rules_versions"),
        value(db, "SELECT max(run_id) FROM runs"),
    )


def snapshot(db: Path) -> list[tuple]:
    return rows(db, "SELECT * FROM rules_versions ORDER BY version") + rows(
        db, "SELECT count(*) FROM audit_log"
    )


# --- store/rules.py -----------------------------------------------------------------------


def test_a_saved_version_is_current_with_who_when_and_why(demo_db: Path) -> None:
    was, _ = demo_rules(demo_db)
    con = connect(demo_db)
    try:
        assert team_rules.current(con).version == was
        assert team_rules.current(con).rules == load_rules()  # the demo ends on the defaults
        saves = "SELECT actor, action, subject FROM audit_log WHERE action = 'rules_save'"
        audit_before = con.execute(saves).fetchall()
        with clock.frozen("2026-05-04T10:30:00"):
            n = team_rules.save(con, STRICTER, actor="kim@example.com", note="larger customers")
        now = team_rules.current(con)
        assert (n, now.version, now.actor, now.at, now.note) == (
            was + 1,
            was + 1,
            "kim@example.com",
            datetime(2026, 5, 4, 10, 30),
            "larger customers",
        )
        assert now.rules.min_seats == 400 and now.rules.accept_within_days == 10
        assert [v.version for v in team_rules.history(con)] == list(range(was + 1, 0, -1))
        assert team_rules.get(con, 1).text == SHIPPED
        assert con.execute(saves).fetchall() == [
            *audit_before,
            ("kim@example.com", "rules_save", f"rules version {was + 1}"),
        ]
    finally:
        con.close()


def test_invalid_rules_an_empty_note_and_the_same_text_write_nothing(demo_db: Path) -> None:
    con = connect(demo_db)
    try:
        before, now = snapshot(demo_db), team_rules.current(con)
        with pytest.raises(RulesError, match="min_seat: unknown key"):
            team_rules.save(con, "min_seat = 1\n" + SHIPPED, actor="kim", note="typo")
        with pytest.raises(StoreError, match="a note is required"):
            team_rules.save(con, STRICTER, actor="kim", note="  ")
        # The current version's own text again: a no-op.
        assert team_rules.save(con, now.text, actor="kim", note="again") == now.version
        assert snapshot(demo_db) == before
    finally:
        con.close()


def test_a_restore_is_a_new_version_with_the_old_text_and_diff_shows_the_change(
    demo_db: Path,
) -> None:
    was, _ = demo_rules(demo_db)
    stricter, restored = was + 1, was + 2
    con = connect(demo_db)
    try:
        team_rules.save(con, STRICTER, actor="kim", note="larger customers")
        assert team_rules.restore(con, 1, actor="bo") == restored
        assert team_rules.current(con).text == SHIPPED
        assert team_rules.current(con).note == "restored version 1"
        diff = team_rules.diff(con, 1, stricter)
        assert diff.startswith(f"--- version 1\n+++ version {stricter}\n")
        assert "-min_seats = 150\n+min_seats = 400\n" in diff
        assert "+accept_within_days = 10\n" in diff
        assert team_rules.diff(con, 1, restored) == ""
        beyond = restored + 2
        with pytest.raises(
            StoreError, match=f"no rules version {beyond}; the versions are 1 to {restored}"
        ):
            team_rules.get(con, beyond)
    finally:
        con.close()


# --- runs record their version ------------------------------------------------------------


def test_commands_use_the_stores_rules_and_runs_record_their_version(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    was, last_run = demo_rules(demo_db)
    run = last_run + 1
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(STRICTER, encoding="utf-8")
    ok(capsys, "rules", "set", stricter, "--note", "larger customers only")
    ok(capsys, "commit")
    # The store's rules (the version just saved: min_seats 400), not the shipped file's.
    assert rows(demo_db, "SELECT run_id, rules_version FROM runs WHERE run_id > ?", [last_run]) == [
        (run, was + 1)
    ]
    toml = value(demo_db, "SELECT rules_toml FROM runs WHERE run_id = ?", [run])
    assert toml.count("min_seats = 400") == 1
    assigned = value(
        demo_db,
        "SELECT count(*) FROM referrals WHERE run_id = ? AND reason = 'assigned'",
        [run],
    )
    small = value(
        demo_db,
        "SELECT count(*) FROM referrals r JOIN customers c USING (tenant_id) "
        "WHERE r.run_id = ? AND r.reason = 'assigned' AND c.seats < 400",
        [run],
    )
    assert assigned > 0 and small == 0
    assert "accept_within_days = 10" in toml


def test_a_rules_file_that_is_a_saved_version_records_it_another_records_none(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    other.write_text(SHIPPED.replace("min_seats = 150", "min_seats = 300"), encoding="utf-8")
    shipped_again = tmp_path / "same.toml"
    shipped_again.write_text("# the same rules, another comment\n" + SHIPPED, encoding="utf-8")
    was, last_run = demo_rules(demo_db)
    con = connect(demo_db)
    try:
        # The demo's newest version holds the shipped rules (as version 1 does, in other
        # words): a run with them records the newest.
        assert team_rules.get(con, was).rules == team_rules.get(con, 1).rules == load_rules()
    finally:
        con.close()
    ok(capsys, "commit", "--rules", other, "--cohort", part_of_backlog(demo_db, tmp_path))
    ok(capsys, "commit", "--rules", shipped_again)
    assert rows(
        demo_db,
        "SELECT run_id, rules_version FROM runs WHERE run_id > ? ORDER BY run_id",
        [last_run],
    ) == [(last_run + 1, None), (last_run + 2, was)]


# --- `frp rules` --------------------------------------------------------------------------


def test_frp_rules_show_set_history_and_diff(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    was, _ = demo_rules(demo_db)
    new = was + 1
    con = connect(demo_db)
    try:
        current = team_rules.current(con).text
    finally:
        con.close()
    assert ok(capsys, "rules", "show") == current
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(STRICTER, encoding="utf-8")
    out = ok(
        capsys, "rules", "set", stricter, "--note", "larger customers", "--actor", "kim",
        "--now", "2026-05-04T10:30",
    )  # fmt: skip
    assert out.strip() == f"saved the team's rules as version {new} (was version {was})"
    assert ok(capsys, "rules", "show") == STRICTER
    assert ok(capsys, "rules", "show", "--version", "1") == SHIPPED
    assert ok(capsys, "rules", "show", "--version", str(was)) == current
    assert "unchanged" in ok(capsys, "rules", "set", stricter, "--note", "again")
    history = ok(capsys, "rules", "history").splitlines()
    assert history[0].split() == ["version", "saved_at", "actor", "note"]
    assert len(history) == 1 + new  # one line a version, the newest first
    assert history[1].startswith(f"{new}  2026-05-04 10:30  kim")
    assert history[1].endswith("larger customers")
    assert history[2].startswith(f"{was}  ")
    assert history[-1].startswith("1  ") and "setup" in history[-1]
    diff = ok(capsys, "rules", "diff", "1", str(new))
    assert "-min_seats = 150\n+min_seats = 400\n" in diff
    same = ok(capsys, "rules", "diff", str(new), str(new)).strip()
    assert same == f"versions {new} and {new} are the same"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # {last}: the store's newest version; {beyond}: one it does not hold.
        (
            ["show", "--version", "{beyond}"],
            "no rules version {beyond}; the versions are 1 to {last}",
        ),
        (["diff", "1", "{beyond}"], "no rules version {beyond}"),
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
    last, _ = demo_rules(demo_db)
    numbers = {"last": last, "beyond": last + 2}
    args = [str(tmp_path / files[a]) if a in files else a.format(**numbers) for a in args]
    before = snapshot(demo_db)
    line = refused(capsys, "rules", *args)
    assert says.format(**numbers) in line, line
    assert snapshot(demo_db) == before


def test_frp_rules_on_a_missing_store_says_how_to_build_one(
    empty_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "rules", "show")
    assert "no such database" in line
    assert not empty_db.exists()


# --- the Referrals and Fairness pages filter by version -------------------------------------


@dataclass(frozen=True)
class TwoVersions:
    """A run with the demo's current version (part of the backlog), then one with a
    version saved after it (the rest)."""

    db: Path
    old: tuple[int, int]  # (rules version, run)
    new: tuple[int, int]


@pytest.fixture
def two_versions(demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> TwoVersions:
    was, last_run = demo_rules(demo_db)
    ok(capsys, "commit", "--cohort", part_of_backlog(demo_db, tmp_path))
    (tmp_path / "v2.toml").write_text(STRICTER, encoding="utf-8")
    ok(capsys, "rules", "set", tmp_path / "v2.toml", "--note", "larger customers")
    ok(capsys, "commit")
    made = rows(
        demo_db, "SELECT run_id, rules_version FROM runs WHERE run_id > ? ORDER BY 1", [last_run]
    )
    assert made == [(last_run + 1, was), (last_run + 2, was + 1)]
    return TwoVersions(demo_db, (was, last_run + 1), (was + 1, last_run + 2))


def runs_of(db: Path, version: int) -> set[int]:
    return {r[0] for r in rows(db, "SELECT run_id FROM runs WHERE rules_version = ?", [version])}


def of_version(db: Path, version: int, what: str = "count(*)") -> int:
    """``what`` over the referrals of the runs made with ``version``."""
    return value(
        db,
        f"SELECT {what} FROM referrals WHERE run_id IN "
        "(SELECT run_id FROM runs WHERE rules_version = ?)",
        [version],
    )


def version_options(db: Path) -> list[str]:
    """What a page's rules version filter offers: every version a run was made with."""
    used = rows(
        db,
        "SELECT DISTINCT rules_version FROM runs WHERE rules_version IS NOT NULL ORDER BY 1 DESC",
    )
    return ["Any version", *(f"version {v}" for (v,) in used)]


@pytest.mark.usefixtures("fresh_caches")
def test_the_referrals_page_filters_by_rules_version(two_versions: TwoVersions) -> None:
    db, (old, _), (new, new_run) = two_versions.db, two_versions.old, two_versions.new
    at = open_page("pages/referrals.py")
    options = at.selectbox(key="ref_rules_version").options
    assert options[:3] == ["Any version", f"version {new}", f"version {old}"]
    assert options == version_options(db)
    for version in (old, new):
        at.selectbox(key="ref_rules_version").set_value(version).run()
        assert not at.exception
        assert at.metric[0].value == f"{of_version(db, version):,}"
        shown = set(at.dataframe[0].value["run_id"])
        assert shown and shown <= runs_of(db, version)
    assert shown == {new_run}  # the newest version's only run


@pytest.mark.usefixtures("fresh_caches")
def test_the_fairness_page_and_its_reads_filter_by_rules_version(
    two_versions: TwoVersions,
) -> None:
    db, (old, _), (new, _) = two_versions.db, two_versions.old, two_versions.new
    con = connect(db)
    try:
        for version in (old, new):
            fair, _ = committed_fairness(con, None, None, load_rules(), version)
            # The report counts referrals: a customer a later run re-assigned (a decline,
            # an expiry) counts again there, as that partner's turn; a run refers each
            # customer once.
            assert fair.customers == of_version(db, version)
            assert of_version(db, version, "count(DISTINCT (run_id, tenant_id))") == fair.customers
            sizes = outcomes_by_size(con, None, None, version)
            assert sizes["customers"].sum() == of_version(db, version)
    finally:
        con.close()
    at = open_page("pages/fairness.py")
    options = at.selectbox(key="fair_rules_version").options
    assert options[:3] == ["Any version", f"version {new}", f"version {old}"]
    assert options == version_options(db)
    at.selectbox(key="fair_rules_version").set_value(new).run()
    assert not at.exception
