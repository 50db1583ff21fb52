"""Timings that unit tests used to assert (``make bench`` reports them; tests check function).

A wall-clock bound in a unit test fails whenever the machine is busy, which on a shared
machine is often; the team measures speed here instead, beside everything else, and
reports the old bounds as targets (met / not met, never asserted). What the tests still
check is that the work is done right: the demo world generates, a thousand referrals
render, a 100 MB file's bad line is named, a busy database is waited for then refused.

``python -m bench.unit`` prints them alone.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

#: (name, goal in seconds): the bounds the tests asserted.
GOALS = {
    "demo_generation": 2.0,
    "thousand_referrals_render": 1.0,
    "csv_100mb_bad_line": 15.0,
    "busy_database_refused": 3.0,
}
LABELS = {
    "demo_generation": "the demo world generated (seed 6, after a first world)",
    "thousand_referrals_render": "1,000 referrals rendered as 3,000 messages",
    "csv_100mb_bad_line": "`frp import` of a 100 MB CSV names its bad line",
    "busy_database_refused": "`frp simulate` on a held database refused "
    "(FRP_LOCK_TIMEOUT=0.5), start-up included",
}
FRP = str(Path(sys.executable).with_name("frp"))

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
con.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
print("holding", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
con.close()
"""


def _demo_generation() -> float:
    from engine.demo import generate_world

    generate_world(5)
    started = time.perf_counter()
    generate_world(6)
    return time.perf_counter() - started


def referred(n: int = 1, **overrides: Any) -> pl.DataFrame:
    """FRP referrals as a commit hands them to ``store.notify.referral_messages`` (the
    notification tests' input too)."""
    row = {
        "tenant_id": "T1",
        "customer_name": "Acme",
        "customer_email": "it@acme.example",
        "eligible_workloads": ["exchange", "intune"],
        "partner_id": "P7",
        "partner_name": "Contoso Partners",
        "partner_email": "referrals@contoso.example",
        "psm_name": "Pat Sullivan",
        "psm_email": "pat@psm.example",
        "language": "en",
        "country": "US",
    } | overrides
    return pl.DataFrame([{"referral_id": i + 1, **row} for i in range(n)])


def big_rows(n: int, offset: int) -> pl.DataFrame:
    """``n`` valid-looking customer rows, as strings (the 100 MB file's, in the tests too)."""
    i = pl.int_range(offset, offset + n, eager=True)
    return pl.DataFrame({"i": i}).select(
        pl.format("T{}", pl.col("i")).alias("tenant_id"),
        pl.format("Alder Logistics GmbH branch {}", pl.col("i")).alias("name"),
        pl.lit("DE").alias("country"),
        pl.lit("de").alias("language"),
        (pl.col("i") % 5000 + 150).cast(pl.String).alias("seats"),
        pl.lit("exchange;teams;intune").alias("workloads"),
        (pl.col("i") % 2 == 0).cast(pl.String).alias("gateway"),
        pl.format("it-admin@alder-{}.example", pl.col("i")).alias("contact_email"),
        pl.lit("true").alias("referral_consent"),
    )


def _thousand_referrals() -> float:
    from store.notify import referral_messages

    frame = referred(1_000).with_columns(
        pl.Series("language", ["en", "de", "fr", "es", "ja"] * 200),
        pl.format("Company {}", pl.col("referral_id")).alias("customer_name"),
    )
    referral_messages(frame.head(5))  # compiled once, as a process's first commit does
    started = time.perf_counter()
    out = referral_messages(frame)
    seconds = time.perf_counter() - started
    if out.height != 3_000:
        raise RuntimeError(f"{out.height} messages for 1,000 referrals")
    return seconds


def _big_csv(folder: Path) -> Path:
    """~100 MB of customer rows with one bad row 100 rows before the end."""
    n = 100 * 1024 * 1024 // len(big_rows(1, 10**6).write_csv(include_header=False))
    rows = big_rows(n + 100, 10**6)
    path = folder / "customers-100mb.csv"
    text = rows.head(n).write_csv()
    bad = "TBAD,Bad Co,DE,de,many,exchange,true,it@bad.example,true\n"
    path.write_text(text + bad + rows.tail(100).write_csv(include_header=False))
    return path


def _csv_100mb(db: Path, folder: Path) -> float:
    path = _big_csv(folder)
    started = time.perf_counter()
    done = subprocess.run(
        [FRP, "import", "--customers", str(path), "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 2 or "line" not in done.stderr:
        raise RuntimeError(f"frp import: exit {done.returncode}: {done.stderr.strip()}")
    return seconds


def _busy_database(db: Path, folder: Path) -> float:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        env = {**os.environ, "FRP_DB": str(db), "FRP_LOCK_TIMEOUT": "0.5"}
        started = time.perf_counter()
        done = subprocess.run(
            [FRP, "simulate", "--db", str(db)],
            env=env,
            capture_output=True,
            text=True,
            cwd=folder,
            check=False,
        )
        seconds = time.perf_counter() - started
    finally:
        holder.communicate("release\n", timeout=30)
    if done.returncode != 2 or "busy" not in done.stderr:
        raise RuntimeError(f"frp simulate: exit {done.returncode}: {done.stderr.strip()}")
    return seconds


def measure(repeats: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each timing ``repeats`` times, interleaved; medians against the old bounds."""
    from store.bootstrap import build_demo

    times: dict[str, list[float]] = {k: [] for k in GOALS}
    with tempfile.TemporaryDirectory(prefix="bench-unit-") as tmp:
        folder = Path(tmp)
        master = folder / "demo.duckdb"
        build_demo(master)
        for rep in range(repeats):
            db = folder / f"db-{rep}.duckdb"
            db.write_bytes(master.read_bytes())
            runs: dict[str, Callable[[], float]] = {
                "demo_generation": _demo_generation,
                "thousand_referrals_render": _thousand_referrals,
                "csv_100mb_bad_line": partial(_csv_100mb, db, folder),
                "busy_database_refused": partial(_busy_database, db, folder),
            }
            for name, run in runs.items():
                times[name].append(run())
                log(f"[unit] repeat {rep + 1}/{repeats} {name:<26} {times[name][-1]:7.2f} s")
    return {
        name: {
            "label": LABELS[name],
            "times_s": [round(t, 4) for t in ts],
            "median_s": statistics.median(ts),
            "goal_s": GOALS[name],
        }
        for name, ts in times.items()
    }


def targets(unit: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The old test bounds as targets (reported, never asserted)."""
    if not unit:
        return []
    return [
        {
            "target": r["label"],
            "goal": f"< {r['goal_s']:g} s",
            "value": r["median_s"],
            "unit": "s",
            "measured_at": "unit",
            "met": bool(r["median_s"] < r["goal_s"]),
            "status": "met" if r["median_s"] < r["goal_s"] else "not met",
        }
        for r in unit.values()
    ]


if __name__ == "__main__":
    for name, r in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1).items():
        print(f"{name}: median {r['median_s']:.2f} s (goal < {r['goal_s']:g} s)")
