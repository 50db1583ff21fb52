"""Subcommands for assignment runs and the data they start from: `frp simulate`,
`frp commit`, `frp fairness`, and `frp demo` and `frp import`, which fill the store.

`frp simulate` on files never touches the store: like every handler here, it imports
what it needs from the store itself, so DuckDB is loaded only by the commands that use it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from cli.args import (
    EXIT_OK,
    Interrupted,
    UsageError,
    db_arg,
    existing,
    given_rules,
    is_interrupt,
    policy_arg,
    progress,
    rules_arg,
    rules_in,
)
from engine.rules import load_rules
from store.errors import StoreError

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    import polars as pl

    from engine.rules import Rules
    from engine.simulation import Simulation


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``sub``, each with its handler."""
    p = sub.add_parser(
        "simulate", help="what-if run: files in, a result file out; writes nothing to the store"
    )
    p.add_argument(
        "--partners",
        help="partners file (.csv, .parquet or .xlsx); with --customers: "
        "simulate on files instead of the store",
    )
    p.add_argument("--customers", help="customers file (.csv, .parquet or .xlsx), in cohort order")
    p.add_argument(
        "--cohort", help="with the store: customers file to simulate instead of the FTCQ backlog"
    )
    p.add_argument("--out", help="result file (.csv, .parquet or .xlsx); one row per customer")
    db_arg(p)
    rules_arg(p)
    policy_arg(p)
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("demo", help="build the demo database (seeded, believable world)")
    db_arg(p)
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--force", action="store_true", help="replace an existing database file")
    p.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the database already exists (for `make run`)",
    )
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("import", help="import partners or customers (customers join the FTCQ)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--partners", help="partners file (.csv, .parquet or .xlsx)")
    group.add_argument("--customers", help="customers file (.csv, .parquet or .xlsx)")
    db_arg(p)
    rules_arg(p)  # max_pause_days: how far ahead a partner's paused_until may be
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("commit", help="simulate and commit in one transaction")
    p.add_argument("--cohort", help="customers file to commit (default: the FTCQ backlog)")
    db_arg(p)
    rules_arg(p)
    policy_arg(p)
    p.set_defaults(handler=cmd_commit)

    p = sub.add_parser(
        "fairness", help="fairness metrics of a result file or of committed referrals"
    )
    p.add_argument(
        "result",
        nargs="?",
        help="result file from `frp simulate --out` (default: committed referrals in the store)",
    )
    p.add_argument("--partners", help="partners file for a result file (default: the store's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a text table")
    db_arg(p)
    p.set_defaults(handler=cmd_fairness)


def cmd_simulate(args: argparse.Namespace) -> int:
    """A run on files or on the store, with the cyclic garbage collector paused throughout.

    The command is one burst of work that ends with its process, and what it makes in
    Python is mostly long-lived: the modules it imports, numba's and OR-Tools' objects
    as they load beside the read (:func:`_warm_while_reading`). The collector found
    almost nothing to free, yet walked them all: about 0.15 s of a million-customer run
    with room, most of it in the loading thread while Polars reads, where both cores are
    busy. A compile (the first run after an install) is collected once, in that thread.
    """
    from engine.assign import gc_paused

    with gc_paused():
        return _simulate(args)


def _simulate(args: argparse.Namespace) -> int:
    from engine.assign import INPUT_COLUMNS, simulate
    from engine.matching import prepare_cohort
    from store import clock
    from store.files import read_customers, read_customers_meanwhile, read_partners, write_table

    started = time.perf_counter()
    if bool(args.partners) != bool(args.customers):
        raise UsageError(
            "frp simulate: give both --partners and --customers, or neither "
            "(then the store is used)"
        )
    given = given_rules(args)
    if args.out:
        from store.files import check_format

        check_format(args.out)  # refuse a bad output name before any work
    if args.partners:
        if args.cohort or args.db:
            raise UsageError("frp simulate: --cohort/--db apply to the store, not to files")
        rules = given or load_rules()  # files, not the store: the shipped rules
        partners = read_partners(args.partners, max_pause_days=rules.max_pause_days)
        _warm_while_reading(partners, args.customers, args.policy)
        # Names and contact emails are validated but a what-if never reads them: they are
        # checked on the other core while the run works, and a bad one still stops the
        # command before anything is written. The run reads workload lists once per
        # distinct list: the frame read from the file is let go as soon as the cohort is
        # prepared (a third of the peak memory at 1M).
        raw, checked = read_customers_meanwhile(args.customers, columns=INPUT_COLUMNS)
        cohort = prepare_cohort(raw, rules)
        del raw
        sim = simulate(
            partners,
            cohort,
            rules,
            args.policy,
            today=clock.today(),
            progress=progress("assigning"),
        )
        del cohort
        checked()
        skipped: list[str] = []
    else:
        from store.commits import simulate_stored
        from store.db import open_db, resolve_path

        cohort = read_customers(args.cohort) if args.cohort else None
        with open_db(existing(resolve_path(args.db)), read_only=True) as con:
            sim, prep = simulate_stored(
                con, rules_in(con, given), args.policy, cohort, progress=progress("assigning")
            )
        skipped = prep.skipped
    if args.out:
        _between_run_and_write()
        write_table(sim.output_lazy(coded=True), args.out)
    print(_summary(sim, skipped, time.perf_counter() - started, args.out))
    return EXIT_OK


def _between_run_and_write() -> None:
    """Give back what the run is done with before the result file's write allocates
    anew (cli/memory.py): the code pages of numba's compiler and OR-Tools, if the run
    loaded them, and the glibc heap numpy's arrays left free."""
    from cli.memory import release_loaded, trim_heap

    release_loaded()
    trim_heap()


def _warm_while_reading(
    partners: pl.DataFrame, customers: str, policy: str
) -> threading.Thread | None:
    """Load the compiled selection loop (``engine.jit.warm``) in a thread while the main
    one reads the customers, when the run will most likely compile: a Parquet cohort and
    free seats of COMPILED_FROM or more each (the run decides for itself; this only
    guesses early). Reading is Polars' work, mostly outside the interpreter, so loading
    numba's 0.3 s of Python takes turns with little; a guess that turns out wrong costs
    the loading, never a result. Returns the thread (None: no warming)."""
    import gc
    import threading

    import polars as pl

    from engine.policies import COMPILED_FROM
    from engine.reasons import Policy

    ready = partners.filter(pl.col("referral_ready"))
    free = (ready["capacity"] - ready["active_referrals"]).clip(lower_bound=0).sum()
    if free < COMPILED_FROM or not customers.lower().endswith(".parquet"):
        return None
    try:
        rows = pl.scan_parquet(customers).select(pl.len()).collect().item()
    except (OSError, pl.exceptions.PolarsError):
        return None  # the read that follows says what is wrong with the file
    if rows < COMPILED_FROM:
        return None

    def load() -> None:
        from cli.memory import release_loaded
        from engine.jit import warm

        # Twice: importing numba touches half of LLVM's pages, loading the kernels (and
        # OR-Tools) the rest, and both happen while the read is at its peak (18 MiB lower
        # this way).
        release_loaded()
        try:
            compiled = warm([Policy(policy)])
        except Exception:  # the run loads what it needs itself, and says what fails
            pass
        else:
            if compiled:  # its garbage: 40 MiB at optimal's peak, the collector paused
                gc.collect()
            release_loaded()  # the kernels are loaded: the libraries' code is not needed

    thread = threading.Thread(target=load, name="frp-warm", daemon=True)
    thread.start()
    return thread


def _summary(sim: Simulation, skipped: list[str], seconds: float, out: str | None) -> str:
    counts = sim.counts()
    n = sim.rows.height  # the compact rows: a summary need not spell out every assignment
    lines = [
        f"{n:,} customers simulated with {sim.policy.value} in {seconds:.2f} s: "
        f"{sim.placed:,} to partners, {n - sim.placed:,} to CSS queues"
    ]
    for reason, count in counts.items():
        if count:
            lines.append(f"  {reason:<22} {count:>9,}")
    if sim.by_part:  # the output has a row per part (docs/domain.md, "Split by workload")
        parts = sim.part_counts()
        lines.append(
            f"  {parts['partner_parts']:,} partner parts ({parts['split_customers']:,} "
            f"customers split across partners), {parts['css_parts']:,} CSS parts"
        )
    if skipped:
        lines.append(f"  {len(skipped):,} skipped: already have an open referral")
    if out:
        lines.append(f"written to {out}")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from store.bootstrap import build_demo
    from store.db import resolve_path

    path = resolve_path(args.db)
    if path.exists() and args.if_missing:
        return EXIT_OK
    if path.exists() and not args.force:
        raise StoreError(f"{path}: already exists; use --force to replace it")
    started = time.perf_counter()
    summary = build_demo(path, seed=args.seed, replace=args.force)
    print(
        f"demo database {path} built in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in summary.items())
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from store.db import open_db, resolve_path, retry_conflicts
    from store.files import read_customers, read_partners
    from store.imports import import_customers, import_partners

    path = resolve_path(args.db)
    if args.partners:
        rules = given_rules(args) or _stored_rules(path)
        # Validated before the database is opened for writing.
        frame = read_partners(args.partners, max_pause_days=rules.max_pause_days)
        with open_db(path) as con:
            summary = retry_conflicts(
                lambda: import_partners(con, frame, source=args.partners), what="the import"
            )
    else:
        frame = read_customers(args.customers)
        with open_db(path) as con:
            summary = retry_conflicts(
                lambda: import_customers(con, frame, source=args.customers), what="the import"
            )
    print(f"imported into {path}: {summary.describe()}")
    return EXIT_OK


def _stored_rules(path: Path) -> Rules:
    """The team's rules of the store at ``path``; the shipped ones for a store not made yet
    (it will start from them)."""
    if not path.is_file() or path.stat().st_size == 0:  # a new store, made by the import
        return load_rules()
    from store.db import open_db

    with open_db(path, read_only=True) as con:
        return rules_in(con, None)


def cmd_commit(args: argparse.Namespace) -> int:
    from store.commits import commit
    from store.db import open_db, resolve_path, retry_conflicts
    from store.files import read_customers

    given = given_rules(args)
    cohort = read_customers(args.cohort) if args.cohort else None
    started = time.perf_counter()
    db = existing(resolve_path(args.db))
    runs: list[int] = []  # the run id of each try, told by the commit as soon as it has one
    try:
        with open_db(db) as con:  # waits while another writes
            summary = retry_conflicts(
                lambda: commit(
                    con,
                    rules_in(con, given),  # the team's rules as they are at this try
                    args.policy,
                    cohort,
                    source=args.cohort or "",
                    progress=progress("assigning"),
                    on_run=runs.append,
                ),
                what="the commit",
            )
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        raise Interrupted(_interrupted_commit(db, runs)) from None
    print(summary.describe() + f" in {time.perf_counter() - started:.2f} s")
    return EXIT_OK


def _interrupted_commit(db: Path, runs: list[int]) -> str:
    """Whether an interrupted commit's run was saved, as the store says (the interrupt may
    have come after the commit point, when the run is whole)."""
    if not runs:
        return "interrupted; nothing was written"
    import duckdb

    from store.db import open_db

    try:
        with open_db(db, read_only=True) as con:
            found = con.execute(
                f"SELECT max(run_id) FROM runs WHERE run_id IN ({', '.join(map(str, runs))})"
            ).fetchall()[0][0]
    except (StoreError, duckdb.Error) as exc:  # cannot be read now: say so, not guess
        return f"interrupted; whether run {runs[-1]} was saved could not be checked ({exc})"
    if found is None:
        return "interrupted; nothing was written"
    return f"interrupted after the run was saved (run {found})"


def cmd_fairness(args: argparse.Namespace) -> int:
    from engine.fairness import report
    from store.fairness import committed_counts, partner_responses, result_inputs

    responses = None  # how partners answered: committed referrals only
    if args.result:
        outcomes, partners, pools = result_inputs(args.result, args.partners, args.db)
    else:
        if args.partners:
            raise UsageError("frp fairness: --partners applies to a result file")
        # Counted in DuckDB: a million referrals reach the report as ~70k weighted rows.
        outcomes, partners, pools = committed_counts(args.db)
        responses = partner_responses(args.db)
    rep = report(outcomes, partners, pools, responses)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(rep.to_text())
    return EXIT_OK
