"""The `frp` command line, through the real console script in a subprocess.

Every call gets ``FRP_DB`` pointed at a temporary path (never data/frp.duckdb), and no
call may print a traceback. The demo database is built once per session (conftest's
``demo_db_master``) and copied for each test that writes to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.columns import ASSIGNMENT_COLUMNS
from engine.reasons import COHORT_REASONS, Policy, Reason
from store.files import read_customers, read_partners
from tests.db_helpers import same_rows

FRP = str(Path(sys.executable).parent / "frp")
ROOT = Path(__file__).resolve().parent.parent

PARTNERS_CSV = """\
partner_id,name,countries,languages,workloads,capacity,active_referrals,referral_ready,psm_name,psm_email,contact_email
P1,Alpha Ltd,US;CA,en,exchange;teams,3,0,true,Ann Psm,ann@psm.example,alpha@p.example
P2,Beta Ltd,US,en;es,exchange;teams;intune,2,1,true,Bob Psm,bob@psm.example,beta@p.example
P3,Gamma Ltd,DE,de;en,exchange,5,0,false,Cy Psm,cy@psm.example,gamma@p.example
P4,Delta Ltd,DE,de,exchange;sharepoint,2,0,true,Di Psm,di@psm.example,delta@p.example
"""

# Cohort order is deliberately not sorted by tenant_id. Ineligible customers do not share
# a (country, language, workloads) signature with an eligible one in the same cohort.
CUSTOMERS_CSV = """\
tenant_id,name,country,language,seats,workloads,gateway,contact_email,referral_consent
T05,Five Co,US,en,500,exchange,true,it@five.example,
T02,Two Co,US,en,100,intune,false,it@two.example,true
T09,Nine Co,FR,fr,900,teams,false,it@nine.example,
T01,One Co,US,en,300,dynamics-365,true,it@one.example,
T07,Seven Co,US,en,300,exchange;teams,false,it@seven.example,
T03,Three Co,DE,de,400,exchange;sharepoint,true,it@three.example,
T04,Four Co,DE,de,400,exchange;sharepoint;viva,false,it@four.example,false
T06,Six Co,DE,de,400,sharepoint,false,it@six.example,
T08,Eight Co,DE,de,400,exchange,false,it@eight.example,
"""

COHORT = ["T05", "T02", "T09", "T01", "T07", "T03", "T04", "T06", "T08"]

# Round robin on the files above: (outcome, partner_id, queue, reason) per customer.
EXPECTED_RR = {
    "T05": ("frp", "P1", "FRP", Reason.ASSIGNED),
    "T02": ("css", None, "CSS Americas", Reason.BELOW_SEAT_THRESHOLD),
    "T09": ("css", None, "CSS EMEA", Reason.NO_PARTNER_MATCH),
    "T01": ("css", None, "CSS Americas", Reason.NO_ELIGIBLE_WORKLOAD),
    "T07": ("frp", "P2", "FRP", Reason.ASSIGNED),
    "T03": ("frp", "P4", "FRP", Reason.ASSIGNED),
    "T04": ("css", None, "CSS EMEA", Reason.NO_REFERRAL_CONSENT),
    "T06": ("frp", "P4", "FRP", Reason.ASSIGNED),
    "T08": ("css", None, "CSS EMEA", Reason.CAPACITY_EXHAUSTED),
}
MATCHING = {"T05": {"P1", "P2"}, "T07": {"P1", "P2"}, "T03": {"P4"}, "T06": {"P4"}, "T08": {"P4"}}
ROOM = {"P1": 3, "P2": 1, "P3": 5, "P4": 2}

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def frp(tmp_path: Path) -> Run:
    """Run the console script in tmp_path; FRP_DB defaults to a database that does not exist."""

    def run(*args: object, env_db: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("FRP_DB", "FRP_DEBUG")}
        env["FRP_DB"] = str(env_db or tmp_path / "unset-FRP_DB.duckdb")
        proc = subprocess.run(
            [FRP, *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,  # a hang guard: `frp demo` runs the product over 26 weeks
        )
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        return proc

    return run


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    partners = tmp_path / "partners.csv"
    customers = tmp_path / "customers.csv"
    partners.write_text(PARTNERS_CSV, encoding="utf-8")
    customers.write_text(CUSTOMERS_CSV, encoding="utf-8")
    return partners, customers


@pytest.fixture
def db(demo_db: Path) -> Path:
    """A private copy of the demo database (conftest), for tests that write or count."""
    return demo_db


def counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = ("partners", "customers", "referrals", "runs", "ftop_tasks", "outbox")
        out = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}
        out["ftcq"] = con.execute("SELECT count(*) FROM customers WHERE in_ftcq").fetchall()[0][0]
        out["audit"] = con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0]
        return out
    finally:
        con.close()


def rr_order(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute("SELECT partner_id, last_assigned FROM rr_order").fetchall())
    finally:
        con.close()


def read_result(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False)


def simulate(
    frp: Run, partners: object, customers: object, out: object, *more: object
) -> subprocess.CompletedProcess[str]:
    """`frp simulate` on two input files, writing ``out``; ``more`` adds options."""
    return frp("simulate", "--partners", partners, "--customers", customers, "--out", out, *more)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- simulate on files -----------------------------------------------------------------


@pytest.mark.parametrize("policy", [p.value for p in Policy])
def test_simulate_files_every_policy(
    frp: Run, files: tuple[Path, Path], tmp_path: Path, policy: str
) -> None:
    out = tmp_path / "out.csv"
    proc = simulate(frp, *files, out, "--policy", policy)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert policy in proc.stdout and str(out.name) in proc.stdout
    result = read_result(out)
    assert result.columns[:7] == [*ASSIGNMENT_COLUMNS, "trace"]
    assert result["tenant_id"].to_list() == COHORT
    assert result["trace"].str.len_chars().min() > 0
    # Every policy places the same number here; each pick is a matching partner with room.
    rows = {r["tenant_id"]: r for r in result.iter_rows(named=True)}
    given: dict[str, int] = {}
    for tenant, (_, _, _, reason) in EXPECTED_RR.items():
        row = rows[tenant]
        if row["outcome"] == "frp":
            assert row["reason"] == Reason.ASSIGNED and row["queue"] == "FRP"
            assert row["partner_id"] in MATCHING[tenant]
            assert row["psm_email"].endswith("@psm.example")
            given[row["partner_id"]] = given.get(row["partner_id"], 0) + 1
        else:
            assert row["queue"].startswith("CSS ")
            if reason is not Reason.ASSIGNED and reason is not Reason.CAPACITY_EXHAUSTED:
                assert row["reason"] == reason
    assert sum(given.values()) == 4
    assert all(n <= ROOM[p] for p, n in given.items())


def test_a_parquet_result_reads_as_text_everywhere(
    frp: Run, files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The result file's columns of few values are written from the run's codes
    (engine.simulation.Texts), yet every reader sees text, as in the CSV: Polars,
    pyarrow and DuckDB each read the file's Arrow schema or its Parquet types."""
    import pyarrow.parquet as pq

    for out in (tmp_path / "out.parquet", tmp_path / "out.csv"):
        proc = simulate(frp, *files, out)
        assert proc.returncode == 0, proc.stderr
    frame = pl.read_parquet(tmp_path / "out.parquet")
    assert {name: str(t) for name, t in frame.schema.items() if t != pl.String} == {
        "eligible_workloads": "List(String)"
    }
    text = frame.with_columns(pl.col("eligible_workloads").list.join(";"))
    assert text.equals(pl.read_csv(tmp_path / "out.csv", infer_schema=False))
    arrow = pq.read_schema(tmp_path / "out.parquet")
    assert {str(arrow.field(name).type) for name in ("outcome", "partner_id", "queue")} == {
        "large_string"
    }
    with duckdb.connect() as con:
        types = dict(
            con.execute(
                "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                [str(tmp_path / "out.parquet")],
            ).fetchall()
        )
        assert types["partner_id"] == types["reason"] == "VARCHAR"
        assert types["eligible_workloads"] == "VARCHAR[]"


def test_simulate_pauses_the_collector_and_gives_it_back(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frp simulate`` runs with the cyclic collector paused (cli/assignment.py says why),
    and a caller in the same process gets it back as it was, after a failure too."""
    import gc

    import engine.assign
    from cli.main import main

    seen: list[bool] = []
    real = engine.assign.simulate

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.assign, "simulate", watched)
    assert gc.isenabled()
    assert main(["simulate", "--partners", str(files[0]), "--customers", str(files[1])]) == 0
    missing = str(tmp_path / "missing.csv")  # fails inside the command, before the run
    assert main(["simulate", "--partners", str(files[0]), "--customers", missing]) != 0
    assert seen == [False] and gc.isenabled()


def test_simulate_round_robin_csv_and_parquet(
    frp: Run, files: tuple[Path, Path], tmp_path: Path
) -> None:
    partners_csv, customers_csv = files
    partners_pq = tmp_path / "partners.parquet"
    customers_pq = tmp_path / "customers.parquet"
    read_partners(partners_csv).drop("last_assigned").write_parquet(partners_pq)
    read_customers(customers_csv).write_parquet(customers_pq)
    assert pl.read_parquet(partners_pq).schema["countries"] == pl.List(pl.String)

    out_pq = tmp_path / "out.parquet"
    out_csv = tmp_path / "out.csv"
    p1 = simulate(frp, partners_pq, customers_pq, out_pq)
    p2 = simulate(frp, partners_csv, customers_csv, out_csv)
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr
    pq, csv = read_result(out_pq), read_result(out_csv)
    got = {
        r["tenant_id"]: (r["outcome"], r["partner_id"], r["queue"], r["reason"])
        for r in csv.iter_rows(named=True)
    }
    assert got == {t: (o, p, q, r.value) for t, (o, p, q, r) in EXPECTED_RR.items()}
    psm = dict(zip(csv["tenant_id"], csv["psm_email"], strict=True))
    assert psm["T05"] == "ann@psm.example" and psm["T07"] == "bob@psm.example"
    for reason in COHORT_REASONS:
        assert reason.value in p2.stdout
    assert pq.columns[:7] == [*ASSIGNMENT_COLUMNS, "trace"]
    cols = ["tenant_id", "outcome", "partner_id", "queue", "reason"]
    assert pq.select(cols).equals(csv.select(cols))
    assert pq["tenant_id"].to_list() == COHORT


def _replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    return "".join(lines)


# (which file is bad, its name, its bytes, what the one-line message must contain)
BAD_INPUTS = {
    "capacity-abc": (
        "partners",
        "bad_partners.csv",
        _replace_line(
            PARTNERS_CSV,
            3,
            "P2,Beta Ltd,US,en;es,exchange,abc,1,true,Bob Psm,bob@psm.example,beta@p.example",
        ).encode(),
        ["line 3", "capacity", "'abc'"],
    ),
    "unknown-country": (
        "customers",
        "bad_customers.csv",
        CUSTOMERS_CSV.replace("T09,Nine Co,FR", "T09,Nine Co,XX").encode(),
        ["line 4", "country", "'XX'"],
    ),
    "missing-column": (
        "customers",
        "bad_customers.csv",
        "\n".join(
            ",".join(line.split(",")[:6] + line.split(",")[7:])
            for line in CUSTOMERS_CSV.splitlines()
        ).encode(),
        ["gateway"],
    ),
    "duplicate-tenant": (
        "customers",
        "bad_customers.csv",
        (CUSTOMERS_CSV + "T05,Again Co,US,en,500,exchange,true,it@again.example,\n").encode(),
        ["line 11", "tenant_id", "'T05'", "line 2"],
    ),
    # Checked while the run works (a what-if does not keep it), still refused before writing.
    "bad-email": (
        "customers",
        "bad_customers.csv",
        CUSTOMERS_CSV.replace("it@nine.example", "it at nine").encode(),
        ["line 4", "contact_email", "'it at nine'"],
    ),
    # A bad cell is said before a repeated key, wherever it was checked.
    "bad-name-and-duplicate": (
        "customers",
        "bad_customers.csv",
        (
            CUSTOMERS_CSV.replace("Nine Co", "Nine\tCo")
            + "T05,Again Co,US,en,500,exchange,true,it@again.example,\n"
        ).encode(),
        ["line 4", "column name", "no control characters"],
    ),
    "bad-extension": ("customers", "customers.xlsx", CUSTOMERS_CSV.encode(), [".xlsx"]),
    "missing-file": ("customers", "no_such_file.csv", None, []),
    "not-utf8": (
        "customers",
        "bad_customers.csv",
        CUSTOMERS_CSV.replace("Nine Co", "Caf\u00e9 Co").encode("latin-1"),
        ["line 4", "UTF-8"],
    ),
    "ragged-row": (
        "customers",
        "bad_customers.csv",
        CUSTOMERS_CSV.replace("it@nine.example,", "it@nine.example,,extra").encode(),
        ["line 4"],
    ),
    "empty-file": ("partners", "bad_partners.csv", b"", []),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_simulate_bad_input_one_line_exit_2(
    frp: Run, files: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    which, name, data, needles = BAD_INPUTS[case]
    bad = tmp_path / name
    if data is not None:
        bad.write_bytes(data)
    partners, customers = files
    if which == "partners":
        partners = bad
    else:
        customers = bad
    out = tmp_path / "out.csv"
    before = set(tmp_path.iterdir())
    proc = simulate(frp, partners, customers, out)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert line.startswith("frp: ")
    assert name in line
    assert "expected" in line
    for needle in needles:
        assert needle in line
    assert proc.stdout == ""
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no temporary file left behind either


def test_simulate_bad_output_name(frp: Run, files: tuple[Path, Path], tmp_path: Path) -> None:
    proc = simulate(frp, *files, "o.ods")
    assert proc.returncode == 2
    assert "o.ods" in one_line(proc) and "expected" in proc.stderr
    assert not (tmp_path / "o.ods").exists()


def test_bad_rules_file_names_the_key(frp: Run, files: tuple[Path, Path], tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("min_seats = 100\nmin_seat = 3\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    proc = simulate(frp, *files, out, "--rules", rules)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "min_seat:" in line and "unknown key" in line and "rules.toml" in line
    assert not out.exists()


def split_rules_file(tmp_path: Path) -> Path:
    """The shipped rules with a split of up to 2 partners and sharepoint a CSS workload."""
    text = (ROOT / "data" / "rules.toml").read_text(encoding="utf-8")
    text = text.replace("max_partners_per_customer = 1", "max_partners_per_customer = 2")
    text = text.replace("css_workloads = []", 'css_workloads = ["sharepoint"]')
    path = tmp_path / "split.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_simulate_with_parts_prints_and_exports_a_row_per_part(
    frp: Run, files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    proc = simulate(frp, *files, out, "--rules", split_rules_file(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "css_workload" in proc.stdout
    assert "partner parts (0 customers split across partners), 1 CSS parts" in proc.stdout
    result = read_result(out)
    t03 = result.filter(pl.col("tenant_id") == "T03")
    assert t03.select("partner_id", "reason", "part", "workloads").rows() == [
        ("P4", "assigned", "1", "exchange"),
        (None, "css_workload", "2", "sharepoint"),
    ]
    assert result.filter(pl.col("tenant_id") == "T06")["reason"].to_list() == ["css_workload"]
    assert result["tenant_id"].unique(maintain_order=True).to_list() == COHORT


def test_commit_with_a_split_on_the_demo(frp: Run, db: Path, tmp_path: Path) -> None:
    """#13: a referral per part, its partner covering its workloads, no two open parts of a
    customer sharing a workload, one FTOP task per Gateway customer, and one customer
    message naming every partner of the customer."""
    from store.commits import SHARED_WORKLOAD_SQL

    proc = frp("commit", "--db", db, "--rules", split_rules_file(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "customers split across partners" in proc.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        ((run, customers),) = q("SELECT max(run_id), arg_max(customers, run_id) FROM runs")
        split = q(
            f"SELECT tenant_id, list(partner_id ORDER BY part) FROM referrals WHERE run_id = {run}"
            " AND outcome = 'frp' GROUP BY tenant_id HAVING count(*) > 1"
        )
        assert split, "the demo backlog has customers two partners can share"
        assert q(f"SELECT count(DISTINCT tenant_id) FROM referrals WHERE run_id = {run}") == [
            (customers,)
        ]
        assert q(SHARED_WORKLOAD_SQL) == [(0,)]
        assert q(
            "SELECT count(*) FROM referrals r JOIN partners p USING (partner_id) "
            f"WHERE r.run_id = {run} AND NOT list_has_all(p.workloads, r.workloads)"
        ) == [(0,)]
        assert q(
            f"SELECT count(*) FROM referrals WHERE run_id = {run} AND reason = 'css_workload' "
            "AND workloads <> ['sharepoint']"
        ) == [(0,)]
        gateway = q(
            "SELECT count(DISTINCT r.tenant_id) FROM referrals r JOIN customers c "
            f"USING (tenant_id) WHERE r.run_id = {run} AND r.outcome = 'frp' AND c.gateway"
        )
        assert q(
            "SELECT count(*), count(DISTINCT t.tenant_id) FROM ftop_tasks t "
            f"JOIN referrals r USING (referral_id) WHERE r.run_id = {run}"
        ) == [(gateway[0][0], gateway[0][0])]
        for tenant, partner_ids in split[:20]:
            bodies = q(
                f"SELECT o.body FROM outbox o JOIN referrals r USING (referral_id) "
                f"WHERE r.run_id = {run} AND o.tenant_id = '{tenant}' "
                "AND o.recipient_role = 'customer'"
            )
            assert len(bodies) == 1  # one message to the customer ...
            names = q(f"SELECT name FROM partners WHERE list_contains({partner_ids!r}, partner_id)")
            assert all(name in bodies[0][0] for (name,) in names)  # ... naming every partner
    finally:
        con.close()


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--partners", "partners.csv"],  # --customers missing
        ["simulate", "--policy", "fastest"],
        ["frobnicate"],
        [],
    ],
    ids=["half-files", "bad-policy", "bad-command", "no-command"],
)
def test_usage_errors_are_one_line_exit_2(frp: Run, files: object, args: list[str]) -> None:
    proc = frp(*args)
    assert proc.returncode == 2
    assert one_line(proc).startswith("frp")


# --- demo ------------------------------------------------------------------------------


def test_demo_builds_once_then_refuses_unless_forced(
    frp: Run, tmp_path: Path, demo_db_master: Path
) -> None:
    """One build, in another process: `frp demo --force` over a changed copy of the
    session's build (tests/conftest.py, made as `frp demo` makes it on a missing file) gives
    that build back table by table (the same seed, the same database). A second build on a
    missing file would only repeat it: the two differ in the refusal of an existing file
    checked here, and nothing else."""
    path = tmp_path / "demo.duckdb"
    shutil.copy(demo_db_master, path)
    built = counts(path)

    again = frp("demo", "--db", path)
    assert again.returncode == 2
    assert "already exists" in one_line(again) and "--force" in again.stderr

    stamp = path.stat().st_mtime_ns
    missing = frp("demo", "--db", path, "--if-missing")
    assert missing.returncode == 0 and missing.stdout == "" and missing.stderr == ""
    assert path.stat().st_mtime_ns == stamp

    # A changed store is replaced by --force.
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM outbox")
    con.execute("UPDATE customers SET in_ftcq = false")
    con.close()
    forced = frp("demo", "--db", path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert path.exists() and "partners" in forced.stdout and "backlog" in forced.stdout
    assert counts(path) == built
    assert built["partners"] >= 300 and built["ftcq"] >= 1000
    same = same_rows(path, demo_db_master)
    assert {"referrals", "runs", "outbox", "audit_log"} <= set(same)
    assert all(same.values()), same
    assert not list(tmp_path.glob(".*building*"))


# --- simulate on the store -------------------------------------------------------------


def test_simulate_store_writes_nothing(frp: Run, db: Path, tmp_path: Path) -> None:
    before, order = counts(db), rr_order(db)
    out = tmp_path / "o.parquet"
    proc = frp("simulate", "--db", db, "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = pl.read_parquet(out)
    assert result.height == before["ftcq"]
    assert result.columns[:7] == [*ASSIGNMENT_COLUMNS, "trace"]
    assert set(result["reason"]) == {r.value for r in COHORT_REASONS}
    assert counts(db) == before
    assert rr_order(db) == order


# --- import ----------------------------------------------------------------------------


def test_import_good_files(frp: Run, db: Path, files: tuple[Path, Path]) -> None:
    partners, customers = files
    before = counts(db)
    proc = frp("import", "--db", db, "--partners", partners)
    assert proc.returncode == 0, proc.stderr
    assert "partners: 4 added, 0 updated" in proc.stdout
    proc = frp("import", "--db", db, "--customers", customers)
    assert proc.returncode == 0, proc.stderr
    assert "customers: 9 added, 0 updated" in proc.stdout
    assert "now waiting in the FTCQ" in proc.stdout
    after = counts(db)
    assert after["partners"] == before["partners"] + 4
    assert after["customers"] == before["customers"] + 9
    assert after["ftcq"] == before["ftcq"] + 9

    again = frp("import", "--db", db, "--partners", partners)
    assert "partners: 0 added, 4 updated" in again.stdout
    assert counts(db)["partners"] == after["partners"]


@pytest.mark.parametrize("kind", ["partners", "customers"])
def test_import_bad_file_writes_nothing(
    frp: Run, db: Path, files: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    partners, customers = files
    good = partners if kind == "partners" else customers
    bad = tmp_path / f"bad_{kind}.csv"
    text = good.read_text(encoding="utf-8")
    bad.write_text(text + text.splitlines()[-1].replace("@", "-at-") + "\n", encoding="utf-8")
    before = counts(db)
    proc = frp("import", "--db", db, f"--{kind}", bad)
    assert proc.returncode == 2
    line = one_line(proc)
    assert bad.name in line and "expected" in line
    assert counts(db) == before

    # Nor does a bad import create a database that was not there.
    fresh = tmp_path / "fresh.duckdb"
    proc = frp("import", "--db", fresh, f"--{kind}", bad)
    assert proc.returncode == 2
    assert not fresh.exists()


# --- commit ----------------------------------------------------------------------------


def test_commit_backlog_then_nothing_new(frp: Run, db: Path) -> None:
    before = counts(db)
    first = frp("commit", "--db", db)
    assert first.returncode == 0, first.stderr
    assert "committed" in first.stdout
    mid = counts(db)
    assert mid["runs"] == before["runs"] + 1
    assert mid["referrals"] == before["referrals"] + before["ftcq"]
    assert mid["ftcq"] == 0
    assert mid["outbox"] > before["outbox"] and mid["ftop_tasks"] > before["ftop_tasks"]

    second = frp("commit", "--db", db)
    assert second.returncode == 0, second.stderr
    assert "nothing new assigned" in second.stdout
    assert counts(db) == mid


def test_commit_cohort_skips_already_referred(
    frp: Run, db: Path, files: tuple[Path, Path], tmp_path: Path
) -> None:
    _, customers = files
    first = frp("commit", "--db", db, "--cohort", customers)
    assert first.returncode == 0, first.stderr
    assert "9 customers" in first.stdout
    mid = counts(db)

    # Three already referred, two new.
    lines = CUSTOMERS_CSV.splitlines()
    overlap = tmp_path / "overlap.csv"
    overlap.write_text(
        "\n".join(
            [
                lines[0],
                lines[1],
                "T20,Twenty Co,US,en,800,exchange,false,it@twenty.example,",
                lines[5],
                lines[8],
                "T21,Twenty-one Co,DE,de,800,exchange,true,it@t21.example,",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    second = frp("commit", "--db", db, "--cohort", overlap)
    assert second.returncode == 0, second.stderr
    assert "2 customers" in second.stdout and "3 skipped" in second.stdout
    after = counts(db)
    assert after["referrals"] == mid["referrals"] + 2
    assert after["runs"] == mid["runs"] + 1

    third = frp("commit", "--db", db, "--cohort", overlap)
    assert third.returncode == 0
    assert "nothing new assigned" in third.stdout
    assert counts(db) == after


def test_commit_missing_database_exit_2(frp: Run, tmp_path: Path) -> None:
    path = tmp_path / "none.duckdb"
    proc = frp("commit", "--db", path)
    assert proc.returncode == 2
    assert "none.duckdb" in one_line(proc)
    assert not path.exists()


# --- fairness --------------------------------------------------------------------------


def test_fairness_of_the_store_json(frp: Run, demo_db_master: Path) -> None:
    proc = frp("fairness", "--db", demo_db_master, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"jain", "gini", "customers", "placed", "css"} <= set(report)
    assert 0 < report["jain"] <= 1 and 0 <= report["gini"] <= 1


def test_fairness_of_a_result_file(frp: Run, files: tuple[Path, Path], tmp_path: Path) -> None:
    partners, customers = files
    csv, parquet = tmp_path / "out.csv", tmp_path / "out.parquet"
    for out in (csv, parquet):
        sim = simulate(frp, partners, customers, out)
        assert sim.returncode == 0, sim.stderr
    text = frp("fairness", csv, "--partners", partners)
    assert text.returncode == 0, text.stderr
    assert "Jain" in text.stdout
    js = frp("fairness", parquet, "--partners", partners, "--json")
    assert js.returncode == 0, js.stderr
    report = json.loads(js.stdout)
    assert report["customers"] == len(COHORT) and report["placed"] == 4
    assert {"jain", "gini"} <= set(report)


def test_fairness_of_a_bad_result_file(frp: Run, files: tuple[Path, Path]) -> None:
    partners, customers = files
    proc = frp("fairness", customers, "--partners", partners)
    assert proc.returncode == 2
    assert "customers.csv" in one_line(proc) and "expected" in proc.stderr


# --- which database --------------------------------------------------------------------


def test_frp_db_is_honoured_and_db_wins(frp: Run, demo_db_master: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.duckdb"

    via_env = frp("fairness", "--json", env_db=demo_db_master)
    assert via_env.returncode == 0, via_env.stderr
    assert json.loads(via_env.stdout)["customers"] > 0

    db_wins = frp("fairness", "--json", "--db", demo_db_master, env_db=missing)
    assert db_wins.returncode == 0, db_wins.stderr
    assert db_wins.stdout == via_env.stdout

    env_ignored = frp("fairness", "--json", "--db", missing, env_db=demo_db_master)
    assert env_ignored.returncode == 2
    assert "missing.duckdb" in one_line(env_ignored)

    # simulate too: without --db it reads FRP_DB.
    out = tmp_path / "o.csv"
    sim = frp("simulate", "--out", out, env_db=demo_db_master)
    assert sim.returncode == 0, sim.stderr
    assert read_result(out).height == counts(demo_db_master)["ftcq"]
    assert not missing.exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "dirty_decay_ms:50,muzzy_decay_ms:0"),  # unset: frp's setting
        ("dirty_decay_ms:500,muzzy_decay_ms:1000", "dirty_decay_ms:50,muzzy_decay_ms:0"),
        ("narenas:1", "narenas:1"),  # the person's own choice is kept
    ],
)
def test_the_allocator_setting_is_frps_unless_the_person_chose_one(
    given: str | None, expected: str
) -> None:
    """cli/__init__ sets jemalloc's decay before polars loads; polars' default inherited
    from a parent process (a test runner, the benchmark) counts as unset."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if given is not None:
        env["_RJEM_MALLOC_CONF"] = given
    code = "import os, cli; print(os.environ['_RJEM_MALLOC_CONF'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


def test_task_list_offers_every_task_status() -> None:
    import argparse

    from cli.main import build_parser
    from store.tasks import STATUSES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    task = next(
        a for a in sub.choices["task"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    status = next(a for a in task.choices["list"]._actions if a.dest == "status")
    assert tuple(status.choices) == STATUSES
