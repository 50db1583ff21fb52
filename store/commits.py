"""Simulating against the stored state, and committing a run in one transaction.

A simulation reads and writes nothing. A commit re-runs the simulation *inside* its
transaction, on the state as it is at that moment, and writes the run, its referrals,
the new round-robin order, FTOP task 3186 for Gateway customers and three outbox
notifications per FRP referral, all or nothing. Customers that already hold an open
referral are left out, so committing the same cohort twice assigns nothing new.

With a split by workload (docs/domain.md, "Split by workload") each part is a referral of
its own: its partner, PSM, workloads (``part``, ``workloads``), messages and acceptance
window. The customer gets one message naming every partner of the run and its workloads;
a Gateway customer gets one FTOP task, not one per part. The re-assignment of one
declined or expired part (store/lifecycle.py) commits the customer with only that part's
workloads while its other parts stay open (``reassigning``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Concatenate, ParamSpec, TypeVar

import duckdb
import polars as pl

from engine.assign import Progress, simulate
from engine.columns import CUSTOMER_SCHEMA
from engine.matching import Cohort, prepare_cohort
from engine.reasons import Policy, Reason
from engine.rules import Rules, to_toml
from engine.simulation import Simulation
from store import clock, state
from store import rules as team_rules
from store.db import OPEN_SQL, audit, registered, transaction
from store.errors import StoreError
from store.notify import referral_messages
from store.outbox import queue_messages
from store.tasks import open_gateway_tasks

P = ParamSpec("P")
T = TypeVar("T")

#: A partner said no, in words or by silence: each counts towards ``max_declines``, and
#: such a partner is never matched with the customer again, by any run.
REFUSED_SQL = "('declined', 'expired')"


@dataclass(frozen=True)
class Prepared:
    """A cohort ready to simulate: who runs, and who was left out because already referred;
    the clock's date the partners were read on, which the run is given (pauses, the
    month a quota counts); and who refused whom (:func:`refusals`), since a customer held
    after a decline comes back through any run of the backlog, not only a drain."""

    partners: pl.DataFrame
    cohort: pl.DataFrame
    skipped: list[str]
    source: str
    today: date
    refused: dict[str, list[str]] = field(default_factory=dict)
    #: Customers of a re-assignment that keep other open parts: never held in the FTCQ
    #: (the queue holds whole customers), so a part with no room goes to CSS.
    partial: frozenset[str] = frozenset()
    #: The cohort as a run reads it, by the eligible workloads it was prepared under (all
    #: that preparing reads of the rules): the Simulate page runs up to twelve policy and
    #: split settings on one cohort, and they share it.
    _runnable: dict[tuple[str, ...], Cohort] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def simulate(
        self,
        rules: Rules,
        policy: Policy | str,
        progress: Progress | None = None,
        *,
        compiled: bool | None = None,
    ) -> Simulation:
        """The engine on this cohort: what every run and simulation on the store does
        (``compiled``: see engine.policies.select)."""
        return simulate(
            self.partners,
            self.runnable(rules),
            rules,
            policy,
            today=self.today,
            progress=progress,
            compiled=compiled,
        )

    def runnable(self, rules: Rules) -> Cohort:
        """The cohort with the refusals joined and its workload lists grouped under
        ``rules``' eligible workloads, made on first use."""
        key = tuple(rules.eligible_workloads)
        if key not in self._runnable:
            self._runnable[key] = prepare_cohort(self.cohort, rules, self.refused)
        return self._runnable[key]


@dataclass(frozen=True)
class CommitSummary:
    run_id: int | None
    policy: str
    customers: int
    placed: int
    css: int
    skipped: int
    tasks: int
    notifications: int
    by_reason: dict[str, int] = field(default_factory=dict)
    held: int = 0  # when_full = "hold": left waiting in the FTCQ for capacity
    #: Simulation.part_counts: split customers, partner parts, CSS parts (CSS workloads)
    parts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.run_id is None:
            return (
                f"nothing committed: all {self.skipped} customers of the cohort already have "
                "an open referral (nothing new assigned)"
                if self.skipped
                else "nothing committed: the cohort is empty (nothing new assigned)"
            )
        reasons = ", ".join(f"{k} {v}" for k, v in self.by_reason.items() if v)
        text = (
            f"run {self.run_id} committed ({self.policy}): {self.customers} customers, "
            f"{self.placed} referred to partners, {self.css} to CSS queues; "
            f"{self.tasks} FTOP 3186 tasks opened, {self.notifications} notifications queued"
        )
        split, css_parts = self.parts.get("split_customers", 0), self.parts.get("css_parts", 0)
        if split or css_parts:
            text += (
                f"; {self.parts.get('partner_parts', 0)} partner parts ({split} customers "
                f"split across partners), {css_parts} CSS parts for CSS workloads"
            )
        if self.held:
            text += f"; {self.held} held in the FTCQ until a matching partner has room"
        if self.skipped:
            text += f"; {self.skipped} skipped (already have an open referral)"
        return text + f" [{reasons}]"


def prepare(
    con: duckdb.DuckDBPyConnection,
    cohort: pl.DataFrame | None = None,
    source: str = "",
    *,
    reassigning: bool = False,
) -> Prepared:
    """The stored partners and the cohort (given, or the FTCQ backlog) minus open referrals.
    ``reassigning``: the cohort is the ended parts of customers (each with only that
    part's workloads), which keep their other open parts and are run all the same."""
    today = clock.today()
    partners = state.partners(con, today)
    if cohort is None:
        cohort = state.backlog(con)
        source = source or "FTCQ backlog"
    cohort = cohort.select(list(CUSTOMER_SCHEMA))
    taken = state.open_referral_tenants(con, cohort["tenant_id"].to_list())
    if reassigning:
        return Prepared(
            partners, cohort, [], source, today, refusals(con, cohort), frozenset(taken)
        )
    skipped = [t for t in cohort["tenant_id"].to_list() if t in taken]
    if skipped:
        cohort = cohort.filter(~pl.col("tenant_id").is_in(skipped))
    source = source or "cohort file"
    return Prepared(partners, cohort, skipped, source, today, refusals(con, cohort))


def refusals(con: duckdb.DuckDBPyConnection, cohort: pl.DataFrame) -> dict[str, list[str]]:
    """tenant_id -> the partners that declined it or let it expire for any of the
    workloads it runs with in ``cohort`` (a split customer's re-assigned part: that
    part's), for the customers that have any: never matched with them again, and counted
    against ``max_declines``."""
    with registered(con, refused_for=cohort.select("tenant_id", "workloads").to_arrow()):
        refused = state.query(
            con,
            "SELECT r.tenant_id, list(DISTINCT r.partner_id ORDER BY r.partner_id) AS partners "
            "FROM referrals r JOIN refused_for f USING (tenant_id) "
            f"WHERE r.status IN {REFUSED_SQL} AND len(list_intersect("
            "coalesce(r.workloads, r.eligible_workloads), f.workloads)) > 0 GROUP BY r.tenant_id",
        )
    return dict(zip(refused["tenant_id"], refused["partners"].to_list(), strict=True))


def simulate_stored(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    policy: Policy | str = Policy.ROUND_ROBIN,
    cohort: pl.DataFrame | None = None,
    *,
    progress: Progress | None = None,
) -> tuple[Simulation, Prepared]:
    """What-if: the run as it would go now. Writes nothing."""
    prep = prepare(con, cohort)
    sim = prep.simulate(rules, policy, progress)
    return sim, prep


def commit_within(
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    policy: Policy | str = Policy.ROUND_ROBIN,
    cohort: pl.DataFrame | None = None,
    *,
    actor: str = "cli",
    source: str = "",
    progress: Progress | None = None,
    on_run: Callable[[int], None] | None = None,
    reassigning: bool = False,
) -> CommitSummary:
    """Simulate on the current state and write the run, inside a transaction the caller
    holds (the referral life cycle); :data:`commit` opens one of its own. ``on_run`` is
    told the run's id as soon as it has one, so a caller interrupted before the summary
    comes back can look in the store for whether that run was saved. ``reassigning``:
    see :func:`prepare`."""
    policy = Policy(policy)
    prep = prepare(con, cohort, source, reassigning=reassigning)
    if prep.cohort.height == 0:
        return CommitSummary(None, policy.value, 0, 0, 0, len(prep.skipped), 0, 0)
    sim = prep.simulate(rules, policy, progress)
    return _write(con, sim, prep, rules, actor, on_run)


def _own_transaction(
    within: Callable[Concatenate[duckdb.DuckDBPyConnection, P], T],
) -> Callable[Concatenate[duckdb.DuckDBPyConnection, P], T]:
    """``within``, which writes in the caller's transaction, run in one of its own."""

    def run(con: duckdb.DuckDBPyConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with transaction(con):
            return within(con, *args, **kwargs)

    return run


#: :func:`commit_within` in a transaction of its own: simulate on the current state and
#: write the run, all or nothing.
commit = _own_transaction(commit_within)


def _write(
    con: duckdb.DuckDBPyConnection,
    sim: Simulation,
    prep: Prepared,
    rules: Rules,
    actor: str,
    on_run: Callable[[int], None] | None = None,
) -> CommitSummary:
    """The commit's writes, in the caller's transaction; the last step refuses the lot
    should it leave two open referrals of a customer sharing a workload."""
    counts = sim.counts()
    n, placed = sim.rows.height, sim.placed
    held = _held(sim, rules, prep.partial)
    run_id = _insert_run(con, sim, prep, rules, actor)
    if on_run:
        on_run(run_id)
    referrals = _referrals(con, sim, held, run_id)
    at = clock.now()
    _insert_referrals(con, sim, prep.cohort, referrals, held, at)
    frp = referrals.filter(pl.col("outcome") == "frp")
    tasks = open_gateway_tasks(con, frp)
    recipients = _recipients(frp, prep.cohort, prep.partial).with_columns(
        pl.lit(rules.accept_by(at), dtype=pl.Datetime("us")).alias("accept_by")
    )
    messages = queue_messages(con, referral_messages(recipients))
    details = {
        "policy": sim.policy.value,
        "customers": n,
        "placed": placed,
        "skipped": len(prep.skipped),
        "by_reason": counts,
    }
    parts = sim.part_counts()
    if sim.by_part:
        details["parts"] = parts
    audit(con, actor, "commit", f"run {run_id}", json.dumps(details))
    if state.scalar(con, SHARED_WORKLOAD_SQL + " AND a.run_id = ?", [run_id]):
        raise StoreError(
            "commit would give a customer two open referrals for the same workload; "
            "nothing was written"
        )
    return CommitSummary(
        run_id,
        sim.policy.value,
        n,
        placed,
        n - placed - held.height,
        len(prep.skipped),
        tasks,
        messages,
        counts,
        held.height,
        parts,
    )


#: Pairs of open referrals of one customer that share a workload (a part's workloads;
#: a referral from before parts, all its eligible ones): ``a`` the newer. The commit
#: refuses to leave any; tests read it as the store's invariant.
SHARED_WORKLOAD_SQL = f"""
SELECT count(*) FROM referrals a JOIN referrals b
  ON a.tenant_id = b.tenant_id AND a.referral_id > b.referral_id
WHERE a.status IN {OPEN_SQL} AND b.status IN {OPEN_SQL}
  AND (len(list_intersect(coalesce(a.workloads, a.eligible_workloads),
                          coalesce(b.workloads, b.eligible_workloads))) > 0
       OR len(coalesce(a.workloads, a.eligible_workloads)) = 0
       OR len(coalesce(b.workloads, b.eligible_workloads)) = 0)
"""


def _held(sim: Simulation, rules: Rules, partial: Collection[str] = ()) -> pl.DataFrame:
    """Customers (tenant_id) left waiting in the FTCQ: with when_full = "hold", those whose
    matching partners were all full; none otherwise (they go to a CSS queue), nor a part
    of a customer whose other parts stay open (``partial``)."""
    if rules.when_full != "hold":
        return pl.DataFrame({"tenant_id": []}, schema={"tenant_id": pl.String})
    return sim.assignments.filter(
        (pl.col("reason") == Reason.CAPACITY_EXHAUSTED.value)
        & ~pl.col("tenant_id").is_in(list(partial))
    ).select("tenant_id")


def _insert_run(
    con: duckdb.DuckDBPyConnection, sim: Simulation, prep: Prepared, rules: Rules, actor: str
) -> int:
    run_id: int = con.execute("SELECT nextval('run_seq')").fetchall()[0][0]
    n, placed = sim.rows.height, sim.placed
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            clock.now(),
            actor,
            sim.policy.value,
            prep.source,
            to_toml(rules),
            n,
            placed,
            n - placed,
            len(prep.skipped),
            team_rules.version_of(con, rules),  # NULL: rules that are no saved version
        ],
    )
    return run_id


def _referrals(
    con: duckdb.DuckDBPyConnection, sim: Simulation, held: pl.DataFrame, run_id: int
) -> pl.DataFrame:
    """The run's referrals (all but the held customers), numbered on from the stored ones,
    with the customer's Gateway flag and the partner's contacts for tasks and messages.
    A part's number follows the customer's open parts (a re-assigned part comes after
    those its customer keeps)."""
    base = con.execute("SELECT coalesce(max(referral_id), 0) FROM referrals").fetchall()[0][0]
    psm = state.partner_psm(con)
    rows = sim.with_detail(*[c for c in sim.detail.columns if c != "tenant_id"])
    if not sim.by_part:
        rows = rows.with_columns(
            pl.lit(1, dtype=pl.Int32).alias("part"), pl.col("eligible_workloads").alias("workloads")
        )
    return (
        rows.join(held, on="tenant_id", how="anti", maintain_order="left")
        .join(_open_parts(con, rows), on="tenant_id", how="left", maintain_order="left")
        .with_row_index("_pos")
        .join(psm, on="partner_id", how="left", maintain_order="left")
        .select(
            (pl.col("_pos").cast(pl.Int64) + base + 1).alias("referral_id"),
            pl.lit(run_id, dtype=pl.Int64).alias("run_id"),
            "tenant_id",
            "outcome",
            "partner_id",
            "psm_name",
            "psm_email",
            "queue",
            "reason",
            # A CSS referral waits for the hand-off: store.db.QUEUED.
            pl.when(pl.col("outcome") == "css")
            .then(pl.lit("queued"))
            .otherwise(pl.lit("active"))
            .alias("status"),
            "trace",
            "pool_key",
            "region",
            "country",
            "language",
            "eligible_workloads",
            (pl.col("part") + pl.col("_open_parts").fill_null(0)).cast(pl.Int32).alias("part"),
            "workloads",
            "gateway",
            "partner_name",
            "partner_email",
        )
    )


def _open_parts(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> pl.DataFrame:
    """tenant_id -> the highest part number among its open referrals (``_open_parts``)."""
    with registered(con, run_tenants=rows.select(pl.col("tenant_id").unique()).to_arrow()):
        return state.query(
            con,
            "SELECT tenant_id, max(coalesce(part, 1))::INTEGER AS _open_parts FROM referrals "
            f"WHERE status IN {OPEN_SQL} AND tenant_id IN (SELECT tenant_id FROM run_tenants) "
            "GROUP BY tenant_id",
        )


def _insert_referrals(
    con: duckdb.DuckDBPyConnection,
    sim: Simulation,
    cohort: pl.DataFrame,
    referrals: pl.DataFrame,
    held: pl.DataFrame,
    at: datetime,
) -> None:
    """The referrals (made ``at``) and what they move: the customers' places in the FTCQ,
    the pools they were drawn from, and the round-robin order of the partners that took
    one."""
    order = sim.partners.filter(
        pl.col("last_assigned_after").is_not_null()
        & (pl.col("last_assigned_after") != pl.col("last_assigned_before").fill_null(-1))
    ).select("partner_id", "last_assigned_after")
    with registered(
        con,
        run_referrals=referrals.drop("gateway", "partner_name", "partner_email"),
        run_cohort=cohort.to_arrow(),
        run_held=held.to_arrow(),
        run_pools=sim.pools.select("pool_key", "partner_ids").to_arrow(),
        run_order=order.to_arrow(),
    ):
        _update_customers(con, at)
        con.execute(
            "INSERT INTO referrals BY NAME SELECT *, ?::TIMESTAMP AS created_at, "
            "?::TIMESTAMP AS updated_at FROM run_referrals",
            [at, at],
        )
        con.execute("INSERT OR IGNORE INTO pools SELECT * FROM run_pools")
        con.execute("INSERT OR REPLACE INTO rr_order SELECT * FROM run_order")


def _update_customers(con: duckdb.DuckDBPyConnection, at: datetime) -> None:
    """Customers new to the store are added, referred ones leave the FTCQ, held ones stay."""
    con.execute(
        """
        INSERT INTO customers BY NAME
        SELECT c.*, false AS in_ftcq,
               (SELECT coalesce(max(ftcq_seq), 0) FROM customers) + row_number() OVER ()
                   AS ftcq_seq,
               ?::TIMESTAMP AS queued_at
        FROM run_cohort c
        WHERE c.tenant_id NOT IN (SELECT tenant_id FROM customers)
        """,
        [at],
    )
    con.execute(
        "UPDATE customers SET in_ftcq = false, held_since = NULL "
        "WHERE tenant_id IN (SELECT tenant_id FROM run_referrals)"
    )
    # Held customers stay in (or join) the FTCQ with their old place, oldest first.
    con.execute(
        "UPDATE customers SET in_ftcq = true, held_since = coalesce(held_since, "
        "?::TIMESTAMP) WHERE tenant_id IN (SELECT tenant_id FROM run_held)",
        [at],
    )


def _recipients(
    frp: pl.DataFrame, cohort: pl.DataFrame, partial: Collection[str] = ()
) -> pl.DataFrame:
    """The FRP referrals with the customer's name and contact email, as notify wants them:
    each part with its own workloads, and the customer's message (on its first part of the
    run) naming every part of the run (``parts``)."""
    parts = frp.group_by("tenant_id").agg(
        pl.struct(
            "partner_id",
            pl.col("partner_name").alias("name"),
            pl.col("partner_email").alias("contact_email"),
            "workloads",
        )
        .sort_by("part")
        .alias("parts"),
        pl.col("part").min().alias("_first"),
    )
    return (
        frp.join(
            cohort.select(
                "tenant_id",
                pl.col("name").alias("customer_name"),
                pl.col("contact_email").alias("customer_email"),
            ),
            on="tenant_id",
            how="left",
        )
        .join(parts, on="tenant_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("workloads").alias("eligible_workloads"),
            (pl.col("part") == pl.col("_first")).alias("to_customer"),
        )
        .drop("_first")
    )
